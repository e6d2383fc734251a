"""``--coverage``: which of the repository's code the notebooks ran, measured inside each kernel.

A silent request starts coverage.py (from the kernel's own environment) before the first cell, in
globals of its own, so nothing enters the notebook's namespace, history or execution counts; the
data file goes to a folder of its own, one per attempt, named at random inside nbci's temporary folder
(which only nbci may list), so that no notebook finds another's. After each cell an IPython
``post_run_cell`` hook stores what was measured so far, so a kernel killed later keeps the lines of
every finished cell; after the last cell (or a cell timeout, once the kernel is interrupted) a
second silent request stops and saves. Only the final attempt of a retried notebook counts.

The data file is the kernel's and so the notebook's: it is read bounded (a regular file, never through a
link, read by a child process with a time and a memory limit: an SQLite file may hold a query that
never ends), and only lines of files whose real path is inside the working
directory are kept, as paths relative to it: that contribution travels with the result (helpers,
the execution cache). The coordinator combines every notebook's contribution into ``coverage.data``
and writes ``coverage.xml`` (Cobertura), ``coverage.json`` and, with ``--html``, ``coverage/``, in a
child process too (the repository's ``exclude_lines`` are regular expressions). The files reported are
those the notebooks ran plus the Python files of the source folders as they are at report time, so that
a result from the execution cache reports what a fresh run would; line numbers past a file's end are
dropped.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import secrets
import shutil
import sys
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from nbci import child
from nbci.errors import ConfigError
from nbci.files import NOFOLLOW, NONBLOCK, inside

MODULE = "_nbci_coverage"  # the name the measurement's globals carry in the kernel
MAX_DATA_BYTES = 256 * 2**20  # a kernel's data file larger than this is not read
READ_SECONDS = 30.0  # for a child process to read one kernel's data file
REPORT_SECONDS = 60.0  # for a child process to write the reports
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
    omit: List[str] = field(default_factory=list)  # the config's ``run:omit``, as the kernels apply it

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
    return Sources(source, options, list(config.run_omit or []) if config else [])


def start_code(data_file: Path, sources: Sources, root: Path) -> str:
    """The silent request that starts measurement in a kernel, writing ``data_file``."""
    source = f"{KERNEL_SOURCE}\nCELL_FILES = {CELL_FILES!r}\nstart({str(data_file)!r}, {sources.source!r}, {str(root)!r})\n"
    return (f"exec(compile({source!r}, '<nbci coverage>', 'exec'), "
            f"{{'__name__': {MODULE!r}, '__builtins__': __import__('builtins').__dict__.copy()}})")


def data_folder() -> Path:
    """A new folder for the run's data files that only nbci may list (its owner may not read it)."""
    folder = Path(tempfile.mkdtemp(prefix="nbci-coverage-"))
    folder.chmod(0o300)
    return folder


def remove_data_folder(folder: Path) -> None:
    """Remove ``data_folder``'s folder and everything in it."""
    try:
        folder.chmod(0o700)
    except OSError:
        return
    shutil.rmtree(folder, ignore_errors=True)


def data_file_for(folder: Path) -> Path:
    """Where one attempt's kernel writes its data: in a new folder of ``folder`` with a random name."""
    private = folder / secrets.token_hex(16)
    private.mkdir(mode=0o700)
    return private / "data"


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
    private = Path(tempfile.mkdtemp(prefix="nbci-coverage-read-"))
    try:
        copy = private / "data"
        copy_bounded(data_file, copy)
        try:
            contributed = child.call(f"{__name__}:read_copy", [str(copy), str(root)], READ_SECONDS)
        except child.ChildTimeout as exc:
            raise ValueError(f"coverage data unreadable: reading it {exc}") from None
        except child.ChildFailed as exc:
            raise ValueError(f"coverage data unreadable: not a coverage.py data file "
                             f"({str(exc).partition(':')[0][:80]})") from None
        if not is_contribution(contributed):
            raise ValueError("not a coverage.py data file")
        return contributed
    finally:
        shutil.rmtree(private, ignore_errors=True)


def read_copy(data_path: str, root: str) -> Dict[str, Any]:
    """The child's side of ``read_contribution``: what the data file at ``data_path`` measured;
    ``ValueError`` for a database with views or triggers (coverage.py's schema has none)."""
    import sqlite3
    from coverage import CoverageData

    with contextlib.closing(sqlite3.connect(Path(data_path).as_uri() + "?mode=ro", uri=True)) as db:
        if db.execute("SELECT count(*) FROM sqlite_master WHERE type IN ('view', 'trigger')").fetchone()[0]:
            raise ValueError("a database with views or triggers")
    data = CoverageData(basename=data_path)
    try:
        data.read()
        return contribution(data, Path(root))
    finally:
        data.close()


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
    out, root, problems = config.output_dir, config.root, []
    contributions = [result.coverage_data for result in run.notebooks if is_contribution(result.coverage_data)]
    lengths = line_counts(contributions, root)
    contributions = [within(contributed, lengths) for contributed in contributions]
    if sum(dropped for _, dropped in contributions):
        print("nbci: warning: --coverage: line numbers past the end of their file (from a kernel's data or the "
              "execution cache) were dropped", file=sys.stderr)
    private = Path(tempfile.mkdtemp(prefix=".coverage-", dir=out))  # written here, then renamed into place
    try:
        files = combine([c for c, _ in contributions], root, private / DATA_FILE,
                        source_files(config.coverage_sources, root))
        try:
            percent, covered, statements, reports = (write_reports(private, config.coverage_sources, config.html)
                                                     if files else (0.0, 0, 0, {}))
        except (child.ChildTimeout, child.ChildFailed) as exc:
            percent, covered, statements, reports, files = 0.0, 0, 0, {}, 0
            problems.append(f"--coverage: the coverage report failed ({exc})" + (
                ": simplify the report settings (exclude_lines, exclude_also, partial_branches) of the "
                "repository's coverage config" if isinstance(exc, child.ChildTimeout) else ""))
        publish(private, out)
    finally:
        shutil.rmtree(private, ignore_errors=True)
    states = [(result.path, result.coverage or {}) for result in run.notebooks if result.coverage is not None]
    ok = config.coverage_fail_under is None or percent >= config.coverage_fail_under
    run.coverage = {"percent": round(percent, 2), "covered_lines": covered, "statements": statements, "files": files,
                    "reports": {**reports, "data": DATA_FILE} if files else {},
                    "fail_under": config.coverage_fail_under, "ok": ok,
                    "incomplete_notebooks": [path for path, state in states if state.get("state") != COMPLETE]}
    return problems + sorted({state["note"] for _, state in states if NOT_INSTALLED in str(state.get("note"))})


def line_counts(contributions: List[Dict[str, Any]], root: Path) -> Dict[str, int]:
    """The lines of each file the contributions name that is, now, a Python file inside ``root`` (checked
    again as the reports are about to read them: a notebook may have replaced one by a link)."""
    paths = {path for contributed in contributions for path in contributed["files"]}
    return {path: line_count(root / path) for path in sorted(paths) if is_source(root / path, root)}


def line_count(path: Path) -> int:
    """How many lines the file at ``path`` has (0 when it cannot be read)."""
    try:
        with open(path, "rb") as handle:
            return 1 + sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(2**20), b""))
    except OSError:
        return 0


def within(contributed: Dict[str, Any], lengths: Dict[str, int]) -> Tuple[Dict[str, Any], int]:
    """``contributed`` with only the files of ``lengths`` and the hits inside their lines; how many hits
    were dropped for naming a line past the end."""
    branch, files, dropped = bool(contributed.get("branch")), {}, 0
    for path, hits in contributed["files"].items():
        if path in lengths:
            files[path] = [hit for hit in hits if all(abs(line) <= lengths[path] for line in (hit if branch else [hit]))]
            dropped += len(hits) - len(files[path])
    return {**contributed, "files": files}, dropped


def source_files(sources: Sources, root: Path) -> List[str]:
    """The Python files of the source folders as they are now, relative to ``root``: those coverage.py
    reports at 0% when no notebook ran them (the config's ``omit`` applies)."""
    from coverage.files import GlobMatcher, find_python_files

    patterns = [p if p.startswith(("*", "?")) else os.path.join(root, p) for p in sources.omit + [CELL_FILES]]
    omit, found = GlobMatcher(patterns), set()
    for folder in (item for item in sources.source if os.path.isabs(item) and os.path.isdir(item)):
        for path in find_python_files(folder, False):
            if not omit.match(path) and is_source(Path(path), root):
                found.add(Path(os.path.realpath(path)).relative_to(root).as_posix())
    return sorted(found)


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


def combine(contributions: List[Dict[str, Any]], root: Path, data_path: Path, unrun: List[str]) -> int:
    """Write every contribution into one coverage.py data file, with the ``unrun`` files at 0% when any
    line ran; return the files it holds."""
    from coverage import CoverageData

    data = CoverageData(basename=str(data_path))
    branch = any(c.get("branch") for c in contributions)
    for contributed in contributions:
        if bool(contributed.get("branch")) != branch:
            continue
        files = {str(root / path): [tuple(hit) if branch else hit for hit in hits]
                 for path, hits in contributed["files"].items()}
        (data.add_arcs if branch else data.add_lines)({path: hits for path, hits in files.items() if hits})
    measured = {path for contributed in contributions for path in contributed["files"]} | set(unrun)
    if data.measured_files():  # files no notebook ran a line of: reported at 0%
        data.touch_files([str(root / path) for path in sorted(measured)])
    data.write()
    return len(data.measured_files())


def write_reports(out: Path, sources: Sources, html: bool) -> Tuple[float, int, int, Dict[str, str]]:
    """Cobertura XML, JSON and (``html``) an HTML report in ``out`` from its ``DATA_FILE``, written by a
    child process (``REPORT_SECONDS``); the total percentage, covered lines, statements and the reports'
    paths relative to ``out``. The repository's config adds only its report settings: nothing of it runs
    or names files in nbci's process."""
    percent, covered, statements, reports = child.call(f"{__name__}:reports_in",
                                                       [str(out), sources.report_options, html], REPORT_SECONDS)
    return float(percent), int(covered), int(statements), {str(k): str(v) for k, v in dict(reports).items()}


def reports_in(folder: str, options: Dict[str, Any], html: bool) -> List[Any]:
    """The child's side of ``write_reports``: the reports written, with the totals as a list."""
    import coverage

    out = Path(folder)
    cov = coverage.Coverage(data_file=str(out / DATA_FILE), config_file=False)
    for name, value in options.items():
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
    return [percent, int(totals.get("covered_lines", 0)), int(totals.get("num_statements", 0)), reports]
