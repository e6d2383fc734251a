"""``--coverage``: which of the repository's code the notebooks ran, measured inside each kernel.

A silent request starts coverage.py (from the kernel's own environment) before the first cell, in
globals of its own, so nothing enters the notebook's namespace, history or execution counts; the
data file goes to nbci's own temporary folder, one file per attempt. After each cell an IPython
``post_run_cell`` hook stores what was measured so far, so a kernel killed later keeps the lines of
every finished cell; after the last cell (or a cell timeout, once the kernel is interrupted) a
second silent request stops and saves. Only the final attempt of a retried notebook counts.

The data file is the kernel's and so the notebook's: it is read bounded (a regular file inside the
folder, never through a link), and only lines of files whose real path is inside the working
directory are kept, as paths relative to it: that contribution travels with the result (helpers,
the execution cache). The coordinator combines every notebook's contribution into ``coverage.data``
and writes ``coverage.xml`` (Cobertura), ``coverage.json`` and, with ``--html``, ``coverage/``.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from nbci.errors import ConfigError
from nbci.files import NOFOLLOW, NONBLOCK, inside

MODULE = "_nbci_coverage"  # the name the measurement's globals carry in the kernel
MAX_DATA_BYTES = 256 * 2**20  # a kernel's data file larger than this is not read
CONFIG_FILES = (".coveragerc", "setup.cfg", "tox.ini", "pyproject.toml")  # coverage.py's own order
SOURCE_SUFFIXES = (".py", ".pyw")  # what a kernel's data may name: the reports quote these files
CELL_FILES = "*/ipykernel_[0-9]*/*"  # where ipykernel compiles cells: never reported
DATA_FILE = "coverage.data"  # the combined data in the output folder (``coverage combine`` reads it)
REPORT_OPTIONS = ("report:exclude_lines", "report:exclude_also", "report:partial_branches", "report:omit",
                  "report:include", "report:precision")  # what the engine takes from the repository's config
COMPLETE, PARTIAL, MISSING = "complete", "partial", "missing"
NOT_INSTALLED = "coverage.py is not installed"  # a kernel's note that is also the run's problem
FINISH_EXPRESSION = ("[c.finish() for c in ().__class__.__base__.__subclasses__() "
                     f"if c.__module__ == {MODULE!r} and c.__qualname__ == 'Measurement']")

KERNEL_SOURCE = '''
class Measurement:
    cov = None

    @classmethod
    def flush(cls, *args):
        try:
            cls.cov._collector.flush_data()
        except Exception:
            pass

    @classmethod
    def finish(cls):
        import contextlib, io
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            cls.cov.stop()
            cls.cov.save()
        return "saved"


def start(data_file, source, root):
    import os
    import coverage
    here = os.getcwd()
    os.chdir(root)  # the repository's configuration, and its relative paths, as `coverage run` there reads them
    try:
        cov = coverage.Coverage(data_file=data_file, source=source, config_file=True)
        cov.set_option("run:parallel", False)
        cov.set_option("run:omit", list(cov.get_option("run:omit") or []) + [CELL_FILES])
        Measurement.cov = cov
        cov.start()
    finally:
        os.chdir(here)
    try:
        get_ipython().events.register("post_run_cell", Measurement.flush)
    except NameError:
        pass
'''


@dataclass
class Sources:
    """What the kernels measure (``source`` for coverage.py) and the report settings of the repository's config."""

    source: List[str]
    report_options: Dict[str, Any] = field(default_factory=dict)

    def portable(self, root: Path) -> List[str]:
        """``source`` with folders relative to ``root``: the same in every checkout (for cache keys)."""
        return [os.path.relpath(item, root) if os.path.isabs(item) else item for item in self.source]


def repository_config(root: Path) -> Any:
    """The settings of the first configuration file coverage.py reads in ``root`` (not a link); None."""
    from coverage.config import CoverageConfig

    for name in CONFIG_FILES:
        path = root / name
        if not path.is_file() or path.is_symlink():
            continue
        config = CoverageConfig()
        try:
            if config.from_file(str(path), warn=lambda message: None, our_file=name == ".coveragerc"):
                return config
        except Exception as exc:
            raise ConfigError(f"--coverage: coverage.py cannot read {name} ({exc}): fix its coverage settings") from None
    return None


def resolve_sources(root: Path, given: List[str]) -> Sources:
    """``--coverage-source`` items (folders relative to ``root``, or package names); else the config's
    ``source``; else ``root`` itself. ``ConfigError`` when coverage.py is not installed here."""
    try:
        import coverage  # noqa: F401
    except ImportError:
        raise ConfigError("--coverage needs coverage.py next to nbci: pip install 'nbci[coverage]' "
                          "(or pip install coverage)") from None
    config = repository_config(root)
    named = list(given) or (list(config.source or []) + list(config.source_pkgs or []) if config else [])
    source = [str(root / item) if (root / item).is_dir() else item for item in named] or [str(root)]
    options = {name: config.get_option(name) for name in REPORT_OPTIONS} if config else {}
    return Sources(source, options)


def start_code(data_file: Path, sources: Sources, root: Path) -> str:
    """The silent request that starts measurement in a kernel, writing ``data_file``."""
    source = f"{KERNEL_SOURCE}\nCELL_FILES = {CELL_FILES!r}\nstart({str(data_file)!r}, {sources.source!r}, {str(root)!r})\n"
    return (f"exec(compile({source!r}, '<nbci coverage>', 'exec'), "
            f"{{'__name__': {MODULE!r}, '__builtins__': __import__('builtins').__dict__.copy()}})")


def data_file_for(folder: Path, index: int, attempt: int) -> Path:
    """Where the kernel of attempt ``attempt`` at job ``index`` writes its data."""
    return folder / f"{index}.{attempt}.data"


def start_problem(content: Dict[str, Any], kernel: str) -> str:
    """One line saying why measurement did not start in a kernel (its reply's error)."""
    ename, evalue = content.get("ename", "Error"), str(content.get("evalue", ""))[:200]
    if ename in ("ModuleNotFoundError", "ImportError") and "coverage" in evalue:
        return (f"--coverage: {NOT_INSTALLED} in the environment of kernel {kernel!r}: "
                "install it there (pip install coverage), next to ipykernel")
    return f"--coverage: measurement could not start in kernel {kernel!r} ({ename}: {evalue})"


def read_contribution(data_file: Path, root: Path) -> Dict[str, Any]:
    """A kernel's data file as ``{"branch": bool, "files": {relative path: lines or arcs}}``, files inside
    ``root`` only; ``OSError`` or ``ValueError`` when it is missing, not a regular file, too large or broken."""
    from coverage import CoverageData

    private = Path(tempfile.mkdtemp(prefix="nbci-coverage-read-"))
    try:
        copy = private / "data"
        copy_bounded(data_file, copy)
        data = CoverageData(basename=str(copy))
        try:
            data.read()
            return contribution(data, root)
        except Exception as exc:
            raise ValueError(f"not a coverage.py data file ({type(exc).__name__})") from None
        finally:
            data.close()
    finally:
        shutil.rmtree(private, ignore_errors=True)


def copy_bounded(source: Path, target: Path) -> None:
    """Copy regular file ``source`` (not a link, at most ``MAX_DATA_BYTES``) to ``target``."""
    fd = os.open(source, os.O_RDONLY | NOFOLLOW | NONBLOCK)
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ValueError("not a regular file")
        if info.st_size > MAX_DATA_BYTES:
            raise ValueError(f"{info.st_size / 2**20:.0f} MiB, over {MAX_DATA_BYTES // 2**20} MiB")
        target.write_bytes(handle.read(MAX_DATA_BYTES + 1)[:MAX_DATA_BYTES])


def contribution(data: Any, root: Path) -> Dict[str, Any]:
    """What a ``CoverageData`` measured in Python files inside ``root``, keyed by path relative to it."""
    branch = bool(data.has_arcs())
    files: Dict[str, List[Any]] = {}
    for measured in data.measured_files():
        real = Path(os.path.realpath(measured))
        if not is_source(real, root):
            continue  # the reports show the files they name: Python sources of the working directory only
        hits = data.arcs(measured) if branch else data.lines(measured)
        files[real.relative_to(root).as_posix()] = sorted(list(hit) if branch else hit for hit in hits or [])
    return {"branch": branch, "files": files}


def summary_of(contributed: Optional[Dict[str, Any]], state: str, note: Optional[str]) -> Dict[str, Any]:
    """A notebook's coverage in ``results.json``: its state, why, and how many lines it ran per file."""
    branch = bool((contributed or {}).get("branch"))
    files = {path: lines_run(hits, branch) for path, hits in (contributed or {}).get("files", {}).items()}
    return {"state": state, "note": note, "files": {path: n for path, n in sorted(files.items()) if n}}


def lines_run(hits: List[Any], branch: bool) -> int:
    """The lines that ``hits`` (lines, or arcs when ``branch``) show ran."""
    return len({line for hit in hits for line in (hit if branch else [hit]) if line > 0})


def closing_line(total: Dict[str, Any]) -> str:
    """The run's coverage in one line (``RunResult.coverage``), for the console and the job summary."""
    fail_under = total.get("fail_under")
    below = "" if total.get("ok", True) else f", below --coverage-fail-under {fail_under:g}: the run fails"
    incomplete = total.get("incomplete_notebooks") or []
    partial = f" ({len(incomplete)} notebooks' data incomplete: see results.json)" if incomplete else ""
    return (f"coverage: {total.get('percent', 0.0):.2f}% of {total.get('statements', 0)} statements in "
            f"{total.get('files', 0)} files{partial}{below}")


def report(config: Any, run: Any) -> List[str]:
    """Combine every notebook's contribution into ``coverage.data``, write the reports, set
    ``run.coverage``; return the run's problems (kernels without coverage.py), one line each."""
    out, root = config.output_dir, config.root
    contributions = [sources_only(result.coverage_data, root) for result in run.notebooks
                     if is_contribution(result.coverage_data)]
    private = Path(tempfile.mkdtemp(prefix=".coverage-", dir=out))  # written here, then renamed into place
    try:
        files = combine(contributions, root, private / DATA_FILE)
        percent, covered, statements, reports = (write_reports(private, config.coverage_sources, config.html)
                                                 if files else (0.0, 0, 0, {}))
        publish(private, out)
    finally:
        shutil.rmtree(private, ignore_errors=True)
    states = [(result.path, result.coverage or {}) for result in run.notebooks if result.coverage is not None]
    ok = config.coverage_fail_under is None or percent >= config.coverage_fail_under
    run.coverage = {"percent": round(percent, 2), "covered_lines": covered, "statements": statements, "files": files,
                    "reports": {**reports, "data": DATA_FILE} if files else {},
                    "fail_under": config.coverage_fail_under, "ok": ok,
                    "incomplete_notebooks": [path for path, state in states if state.get("state") != COMPLETE]}
    return sorted({state["note"] for _, state in states if NOT_INSTALLED in str(state.get("note"))})


def sources_only(contributed: Dict[str, Any], root: Path) -> Dict[str, Any]:
    """``contributed`` without the files that are not, now, Python files inside ``root`` (checked again
    as the reports are about to read them: a notebook may have replaced one by a link)."""
    files = {path: hits for path, hits in contributed["files"].items() if is_source(root / path, root)}
    return {**contributed, "files": files}


def is_source(path: Path, root: Path) -> bool:
    """Whether ``path`` is a regular Python file whose real path is inside ``root``."""
    real = Path(os.path.realpath(path))
    return inside(real, root) and real.suffix in SOURCE_SUFFIXES and real.is_file()


def publish(private: Path, out: Path) -> None:
    """Move what ``private`` holds into ``out``, replacing (never following) what stands there; an
    earlier run's report that this run did not write is removed."""
    for name in (DATA_FILE, "coverage.xml", "coverage.json", "coverage"):
        target = out / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()
        if (private / name).exists():
            os.rename(private / name, target)


def is_contribution(data: Any) -> bool:
    """Whether ``data`` has a contribution's shape (it may come from the execution cache's folder)."""
    files = data.get("files") if isinstance(data, dict) else None
    return isinstance(files, dict) and all(isinstance(path, str) and isinstance(hits, list) and all(map(is_hit, hits))
                                           for path, hits in files.items())


def is_hit(hit: Any) -> bool:
    """A line number, or an arc: a pair of line numbers."""
    if isinstance(hit, list) and len(hit) == 2:
        return all(isinstance(line, int) and not isinstance(line, bool) for line in hit)
    return isinstance(hit, int) and not isinstance(hit, bool)


def combine(contributions: List[Dict[str, Any]], root: Path, data_path: Path) -> int:
    """Write every contribution into one coverage.py data file; return the files it holds."""
    from coverage import CoverageData

    data = CoverageData(basename=str(data_path))
    branch = any(c.get("branch") for c in contributions)
    for contributed in contributions:
        if bool(contributed.get("branch")) != branch:
            continue
        files = {str(root / path): [tuple(hit) if branch else hit for hit in hits]
                 for path, hits in contributed["files"].items()}
        (data.add_arcs if branch else data.add_lines)({path: hits for path, hits in files.items() if hits})
    measured = {path for contributed in contributions for path in contributed["files"]}
    if data.measured_files() and measured:  # files no notebook ran a line of: reported at 0%
        data.touch_files([str(root / path) for path in sorted(measured)])
    data.write()
    return len(data.measured_files())


def write_reports(out: Path, sources: Sources, html: bool) -> Tuple[float, int, int, Dict[str, str]]:
    """Cobertura XML, JSON and (``html``) an HTML report in ``out`` from its ``DATA_FILE``; the total
    percentage, covered lines, statements and the reports' paths relative to ``out``. The repository's
    config adds only its report settings: nothing of it runs or names files in nbci's process."""
    import coverage

    cov = coverage.Coverage(data_file=str(out / DATA_FILE), config_file=False)
    for name, value in sources.report_options.items():
        if value not in (None, []):
            cov.set_option(name, value)
    cov.load()
    reports = {"xml": "coverage.xml", "json": "coverage.json"}
    cov.xml_report(outfile=str(out / reports["xml"]), ignore_errors=True)
    cov.json_report(outfile=str(out / reports["json"]), ignore_errors=True)
    if html:
        reports["html"] = "coverage/index.html"
        cov.html_report(directory=str(out / "coverage"), ignore_errors=True)
    percent = cov.report(file=io.StringIO(), ignore_errors=True)
    totals = json.loads((out / reports["json"]).read_text(encoding="utf-8")).get("totals", {})
    return percent, int(totals.get("covered_lines", 0)), int(totals.get("num_statements", 0)), reports
