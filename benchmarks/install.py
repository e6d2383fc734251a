"""Time creating a notebook environment: ``pip install -r`` against ``uv pip install -r``.

Each timed run installs ``requirements-realistic.txt`` into a fresh, empty virtualenv (made
outside the timing, without pip). Cold runs start from an empty cache folder of their own;
each warm run reuses the cache its tool filled in the same round. Runs are interleaved
round-robin (pip cold, uv cold, ..., pip warm, uv warm, ...) ``--repeat`` times and the
median is reported with uv/pip ratios.

Both tools get the same package sources: pip reads its configuration (``pip config list``,
which includes ``PIP_*`` variables) as usual, and uv is given the same index, extra indexes,
find-links and constraints on its command line, with ``--index-strategy unsafe-best-match``
so that, like pip, it picks the best version across all of them.

pip and uv are installed, up to date, into their own tooling virtualenv (``--tools-dir``).
pip compiles ``.pyc`` files while installing and uv does not by default, so the
``uv-compile`` method (``uv pip install --compile-bytecode``) is the like-for-like one.

In CI a warm cache is itself restored first: before each warm run, ``cache-restore`` times
unpacking the tool's cache (packed the way ``actions/cache`` packs a path, tar with zstd, outside
the timing), so the warm-cache path costs ``cache-restore`` + ``warm``. After each warm install the
environment is packed the same way, deleted, and ``restored`` times unpacking it at the same
path: what a run whose dependency files did not change pays with the action's environment cache
(``cache: true``) instead of the warm-cache path.

Usage: ``python benchmarks/install.py [--repeat 3] [--methods pip,uv,uv-compile] [--json out.json]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from run import MARKER, ForeignCpu, cpu_probe_seconds, wait_for_quiet

HERE = Path(__file__).resolve().parent
DEFAULT_REQUIREMENTS = HERE / "requirements-realistic.txt"
DEFAULT_TOOLS_DIR = Path(tempfile.gettempdir()) / "nbci-bench-install-tools"
PYPI = "https://pypi.org/simple"
METHODS = ("pip", "uv", "uv-compile")
QUIET_WAIT = 60  # seconds to wait, before each run, for other processes to go idle
SOURCE_VARIABLES = ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_CONSTRAINT", "PIP_NO_INDEX",
                    "UV_INDEX_URL", "UV_EXTRA_INDEX_URL", "UV_DEFAULT_INDEX", "UV_INDEX", "UV_FIND_LINKS",
                    "UV_CONSTRAINT", "UV_INDEX_STRATEGY")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- sources


@dataclass
class Sources:
    """Where packages come from, as pip is configured on this machine."""

    index_url: str
    extra_index_urls: List[str] = field(default_factory=list)
    find_links: List[str] = field(default_factory=list)
    constraints: List[str] = field(default_factory=list)

    def uv_args(self) -> List[str]:
        """The same sources as ``uv pip install`` options."""
        args = ["--index-url", self.index_url, "--index-strategy", "unsafe-best-match"]
        for url in self.extra_index_urls:
            args += ["--extra-index-url", url]
        for link in self.find_links:
            args += ["--find-links", link]
        for path in self.constraints:
            args += ["--constraint", path]
        return args


def pip_config(pip: List[str], env: Dict[str, str]) -> Dict[str, str]:
    """``pip config list`` as a dict of option name to value; later scopes win, env last."""
    text = subprocess.run(pip + ["config", "list"], capture_output=True, text=True, check=True, env=env).stdout
    values: Dict[str, str] = {}
    env_values: Dict[str, str] = {}
    for line in text.splitlines():
        match = re.match(r"(:env:|[\w-]+)\.([\w-]+)='(.*)'$", line.strip())
        if match:
            scope, key, value = match.groups()
            (env_values if scope == ":env:" else values)[key] = value
    values.update(env_values)
    return values


def pypi_only_environ() -> Dict[str, str]:
    """The environment with pip's configuration files and source options switched off."""
    env = {k: v for k, v in os.environ.items() if k not in SOURCE_VARIABLES}
    env["PIP_CONFIG_FILE"] = os.devnull  # pip then reads no configuration file at all
    return env


def pip_sources(pip: List[str], env: Dict[str, str]) -> Sources:
    config = pip_config(pip, env)
    return Sources(
        index_url=config.get("index-url", PYPI),
        extra_index_urls=config.get("extra-index-url", "").split(),
        find_links=config.get("find-links", "").split(),
        constraints=config.get("constraint", "").split(),
    )


# --------------------------------------------------------------------------- tools


@dataclass
class Tools:
    """The pip and uv under test, from their own virtualenv."""

    python: Path
    uv: Path
    pip_version: str
    uv_version: str

    def pip(self) -> List[str]:
        return [str(self.python), "-m", "pip"]


def ensure_tools(tools_dir: Path) -> Tools:
    """Create (once) a virtualenv holding the latest pip and uv from the package index."""
    python = tools_dir / "bin" / "python"
    if not (tools_dir / "bin" / "uv").exists():
        log(f"installing pip and uv into {tools_dir}")
        subprocess.run([sys.executable, "-m", "venv", str(tools_dir)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--upgrade", "pip", "uv"], check=True)
    version = lambda argv: subprocess.run(argv, capture_output=True, text=True, check=True).stdout.split()[1]
    return Tools(python, tools_dir / "bin" / "uv",
                 version([str(python), "-m", "pip", "--version"]), version([str(tools_dir / "bin" / "uv"), "--version"]))


# --------------------------------------------------------------------------- runs


@dataclass
class Run:
    """One timed install."""

    method: str
    cache: str  # "cold" or "warm"
    round: int
    seconds: float
    returncode: int
    packages: Dict[str, str] = field(default_factory=dict)  # what ended up installed
    sources: Dict[str, int] = field(default_factory=dict)  # where the wheels came from, by kind
    foreign_cpu: float = 0.0  # CPU seconds used meanwhile by processes outside the benchmark

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and bool(self.packages)


def install_command(method: str, tools: Tools, sources: Sources, target: Path,
                    requirements: Path, cache: Path) -> List[str]:
    python = str(target / "bin" / "python")
    if method == "pip":
        return tools.pip() + ["--python", python, "install", "--cache-dir", str(cache), "-r", str(requirements)]
    extra = ["--compile-bytecode"] if method == "uv-compile" else []
    return [str(tools.uv), "pip", "install", "--python", python, "--cache-dir", str(cache),
            *sources.uv_args(), *extra, "-r", str(requirements)]


def installed(tools: Tools, target: Path) -> Dict[str, str]:
    """name -> version of everything in the target environment."""
    result = subprocess.run([str(tools.uv), "pip", "list", "--python", str(target / "bin" / "python"),
                             "--format", "json"], capture_output=True, text=True)
    if result.returncode != 0:
        return {}
    return {item["name"].lower(): item["version"] for item in json.loads(result.stdout)}


def pip_sources_used(log_text: str) -> Dict[str, int]:
    """From pip's log: files downloaded over HTTP, taken from local paths, or from pip's cache."""
    return {
        "downloaded over HTTP": len(re.findall(r"^\s*Downloading \S+", log_text, re.M)),
        "local files": len(re.findall(r"^\s*Processing /", log_text, re.M)),
        "pip cache": len(re.findall(r"^\s*Using cached \S+", log_text, re.M)),
    }


def uv_sources_used(cache: Path) -> Dict[str, int]:
    """From uv's cache layout: packages per kind of source (``pypi``, ``index`` for any other
    index, ``url``, ``path``)."""
    counts: Dict[str, int] = {}
    for kind in cache.glob("wheels-v*/*"):
        packages = {p.name for p in kind.glob("*/*" if kind.name == "index" else "*") if p.is_dir()}
        counts[kind.name] = counts.get(kind.name, 0) + len(packages)
    return counts


def timed(argv: List[str], env: Dict[str, str], log_path: Path) -> Tuple[float, int, float]:
    """Run a command; return its wall seconds, exit status and the other processes' CPU seconds."""
    foreign = ForeignCpu(env[MARKER])
    foreign.sample()
    with log_path.open("wb") as sink:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT, env=env)
        while proc.poll() is None:
            foreign.sample()
            time.sleep(0.25)
        seconds = time.perf_counter() - start
    foreign.sample()
    return seconds, proc.returncode, foreign.seconds()


def timed_install(method: str, cache_state: str, round_: int, tools: Tools, sources: Sources,
                  requirements: Path, cache: Path, work: Path, env: Dict[str, str]) -> Run:
    """Make a fresh empty venv, then time one install into it."""
    target = work / f"env-{method}-{cache_state}-{round_}"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(target)], check=True)
    argv = install_command(method, tools, sources, target, requirements, cache)
    log_path = work / f"{target.name}.log"
    if wait_for_quiet(QUIET_WAIT) is None:
        log(f"  machine still busy after {QUIET_WAIT} s; timing anyway")
    seconds, code, foreign = timed(argv, env, log_path)
    text = log_path.read_text(errors="replace")
    run = Run(method, cache_state, round_, seconds, code, installed(tools, target), foreign_cpu=foreign)
    run.sources = pip_sources_used(text) if method == "pip" else uv_sources_used(cache)
    state = "ok" if run.ok else "FAILED:\n" + "\n".join(text.splitlines()[-15:])
    log(f"  {method} {cache_state}: {seconds:.1f} s, {len(run.packages)} packages, {state} "
        f"(other processes used {foreign:.1f} CPU s)")
    if cache_state == "warm" and run.ok:
        subprocess.run(["tar", "--zstd", "-cf", f"{target}.tar.zst", "-C", str(work), target.name], check=True)
    shutil.rmtree(target)
    return run


def timed_unpack(method: str, state: str, round_: int, folder: Path, work: Path, env: Dict[str, str]) -> Run:
    """Pack ``folder`` as actions/cache does (untimed), delete it, and time unpacking it again."""
    archive = work / f"{folder.name}.tar.zst"
    folder.mkdir(parents=True, exist_ok=True)  # a tool that cached nothing (local wheel folders) packs an empty one
    subprocess.run(["tar", "--zstd", "-cf", str(archive), "-C", str(folder.parent), folder.name], check=True)
    shutil.rmtree(folder)
    if wait_for_quiet(QUIET_WAIT) is None:
        log(f"  machine still busy after {QUIET_WAIT} s; timing anyway")
    seconds, code, foreign = timed(["tar", "--zstd", "-xf", str(archive), "-C", str(folder.parent)], env,
                                   work / f"{folder.name}-{state}.log")
    archive.unlink()
    log(f"  {method} {state}: {seconds:.1f} s")
    return Run(method, state, round_, seconds, code, {"unpacked": folder.name} if folder.is_dir() else {},
               foreign_cpu=foreign)


def timed_restore(method: str, round_: int, tools: Tools, work: Path, env: Dict[str, str]) -> Run:
    """Time unpacking the environment the warm ``method`` run left packed, at the same path."""
    name = f"env-{method}-warm-{round_}"
    archive = work / f"{name}.tar.zst"
    if not archive.exists():
        return Run(method, "restored", round_, 0.0, 1)
    if wait_for_quiet(QUIET_WAIT) is None:
        log(f"  machine still busy after {QUIET_WAIT} s; timing anyway")
    seconds, code, foreign = timed(["tar", "--zstd", "-xf", str(archive), "-C", str(work)], env,
                                   work / f"{name}-restore.log")
    run = Run(method, "restored", round_, seconds, code, installed(tools, work / name), foreign_cpu=foreign)
    log(f"  {method} restored: {seconds:.1f} s, {len(run.packages)} packages")
    shutil.rmtree(work / name)
    archive.unlink()
    return run


# --------------------------------------------------------------------------- report


@dataclass
class Row:
    """All runs of one tool from one cache state."""

    method: str
    cache: str
    seconds: List[float]
    failed: int
    foreign_cpu: List[float] = field(default_factory=list)

    @property
    def median(self) -> Optional[float]:
        return statistics.median(self.seconds) if self.seconds and not self.failed else None

    @property
    def noise(self) -> float:
        """Median share of the machine's CPU that other processes used during the runs."""
        cores = os.cpu_count() or 1
        return statistics.median([cpu / (secs * cores) for cpu, secs in zip(self.foreign_cpu, self.seconds)] or [0])


def rows(runs: List[Run], methods: Sequence[str]) -> List[Row]:
    table = []
    for cache in ("cold", "cache-restore", "warm", "restored"):
        for method in methods:
            mine = [r for r in runs if r.method == method and r.cache == cache]
            table.append(Row(method, cache, [round(r.seconds, 2) for r in mine if r.ok],
                             sum(not r.ok for r in mine), [round(r.foreign_cpu, 2) for r in mine if r.ok]))
    return table


def markdown(table: List[Row]) -> List[str]:
    pip = {row.cache: row.median for row in table if row.method == "pip"}
    warm = {row.method: row.median for row in table if row.cache == "warm"}
    lines = ["| tool | cache | median seconds | runs (s) | uv / pip | / its warm install | other load |",
             "| --- | --- | ---: | --- | ---: | ---: | ---: |"]
    for row in table:
        shown = f"{row.median:.1f}" if row.median is not None else f"failed ({row.failed})"
        runs = ", ".join(f"{s:.1f}" for s in row.seconds)
        lines.append(f"| {row.method} | {row.cache} | {shown} | {runs} | {ratio(row.median, pip.get(row.cache))} "
                     f"| {ratio(row.median, warm.get(row.method))} | {row.noise:.0%} |")
    return lines


def ratio(value: Optional[float], base: Optional[float]) -> str:
    return f"{value / base:.2f}" if value is not None and base else "n/a"


def resolution_lines(runs: List[Run]) -> List[str]:
    """Whether every tool installed the same versions, and from where (cold runs of round 1).

    uv's sources are read from its cache: ``pypi`` is the PyPI index, ``index`` any other.
    """
    first = {r.method: r.packages for r in runs if r.round == 1 and r.cache == "cold" and r.ok}
    if "pip" not in first:
        return []
    lines = []
    for method, packages in first.items():
        if method == "pip":
            continue
        diff = sorted(set(packages.items()) ^ set(first["pip"].items()))
        lines.append(f"- {method} vs pip: " + ("same packages and versions" if not diff else f"differ: {diff}"))
    for r in runs:
        if r.round == 1 and r.cache == "cold" and r.ok:
            where = ", ".join(f"{n} {kind}" for kind, n in r.sources.items() if n) or "unknown"
            lines.append(f"- {r.method} cold, round 1: {len(r.packages)} packages installed; sources: {where}")
    return lines


def machine_lines(tools: Tools, sources: Sources) -> List[str]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return [
        f"- CPU: {cpu}, {os.cpu_count()} cores; {platform.platform()}; Python {platform.python_version()}",
        f"- pip {tools.pip_version}, uv {tools.uv_version}",
        f"- index: {sources.index_url}; extra indexes: {' '.join(sources.extra_index_urls) or 'none'}; "
        f"find-links: {' '.join(sources.find_links) or 'none'}; constraints: {' '.join(sources.constraints) or 'none'}",
        "- pip read these from its configuration; uv was given them as options "
        "(--index-strategy unsafe-best-match)",
    ]


# --------------------------------------------------------------------------- main


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3, help="rounds of cold and warm installs (default 3)")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma list of {', '.join(METHODS)}")
    parser.add_argument("--requirements", type=Path, default=DEFAULT_REQUIREMENTS)
    parser.add_argument("--tools-dir", type=Path, default=DEFAULT_TOOLS_DIR,
                        help=f"virtualenv holding pip and uv (default {DEFAULT_TOOLS_DIR})")
    parser.add_argument("--sources", choices=("pip-config", "pypi"), default="pip-config",
                        help="pip-config: whatever pip is configured with here, given to uv too (default); "
                             "pypi: PyPI only for both, pip's configuration files and source variables off")
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    args = parser.parse_args(argv)
    args.method_names = [m.strip() for m in args.methods.split(",") if m.strip()]
    if any(m not in METHODS for m in args.method_names) or args.repeat < 1:
        parser.error(f"--methods takes {', '.join(METHODS)}; --repeat must be positive")
    return args


def benchmark(args: argparse.Namespace, tools: Tools, sources: Sources, env: Dict[str, str],
              probes: List[float]) -> List[Run]:
    """All runs, round by round; ``probes`` receives one CPU-speed probe per round."""
    runs: List[Run] = []
    requirements = args.requirements.resolve()
    with tempfile.TemporaryDirectory(prefix="nbci-bench-install-") as tmp:
        work = Path(tmp)
        for round_ in range(1, args.repeat + 1):
            probes.append(cpu_probe_seconds())
            log(f"round {round_}/{args.repeat} (CPU probe {probes[-1]:.3f} s)")
            caches = {m: work / f"cache-{m}-{round_}" for m in args.method_names}
            for cache_state in ("cold", "warm"):
                for method in args.method_names:
                    if cache_state == "warm":  # CI first restores the cache the cold run left
                        runs.append(timed_unpack(method, "cache-restore", round_, caches[method], work, env))
                    runs.append(timed_install(method, cache_state, round_, tools, sources,
                                              requirements, caches[method], work, env))
            for method in args.method_names:
                runs.append(timed_restore(method, round_, tools, work, env))
            for cache in caches.values():
                shutil.rmtree(cache, ignore_errors=True)
    return runs


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    tools = ensure_tools(args.tools_dir.resolve())
    env = pypi_only_environ() if args.sources == "pypi" else dict(os.environ)
    env[MARKER] = uuid.uuid4().hex
    sources = pip_sources(tools.pip(), env)
    probes: List[float] = []
    runs = benchmark(args, tools, sources, env, probes)
    table = rows(runs, args.method_names)
    header = [f"## Environment install benchmark ({args.requirements.name}, sources: {args.sources}, "
              f"median of {args.repeat} interleaved runs, fresh venv each run)", ""]
    probe_line = "- CPU speed probe per round (seconds of a fixed loop): " + ", ".join(f"{p:.3f}" for p in probes)
    print("\n".join(header + markdown(table) + ["", "Notes:"] + resolution_lines(runs)
                    + machine_lines(tools, sources) + [probe_line]))
    if args.json:
        data = {"tools": asdict(tools), "source_mode": args.sources, "sources": asdict(sources), "cpu_probes": probes,
                "runs": [asdict(r) for r in runs],
                "table": [dict(asdict(row), median=row.median) for row in table]}
        args.json.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    return 0 if all(r.ok for r in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
