"""Time ``nbci run`` against the usual ways of executing notebooks in CI, in one invocation.

The peers are the classic recipes: a shell loop over ``jupyter nbconvert --execute``, a shell
loop over ``papermill``, ``pytest --nbmake`` and ``pytest --nbmake -n 2``. Every method runs the
same synthetic corpus (``corpus.py``) in the same virtualenv and the same ``python3`` kernel,
``--repeat`` times, round-robin, each time on a fresh copy of the corpus; the median wall time
is reported next to a floor: the recorded cell time spread over the machine's cores, plus one
kernel start.

The first run creates the virtualenv (cached in ``--venv-dir``), then the script re-executes
itself with that virtualenv's Python, whose ``bin`` is put first on ``PATH`` for every method.

Usage: ``python benchmarks/run.py [--repeat 3] [--methods nbci,nbconvert] [--json out.json]``
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import itertools
import signal
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import corpus  # noqa: E402  (a sibling module, found through the path set above)

VENV_PACKAGES = (
    "numpy", "pandas", "matplotlib", "ipykernel", "jupyter_client", "nbconvert",
    "papermill", "nbmake", "pytest", "pytest-xdist", "psutil", "coverage",
)
REPORTED_PACKAGES = (
    "nbci", "nbclient", "jupyter_client", "ipykernel", "nbconvert", "nbmake", "papermill",
    "pytest", "pytest-xdist", "numpy", "pandas", "matplotlib",
)
DEFAULT_VENV_DIR = Path(tempfile.gettempdir()) / "nbci-bench-venv"
STAMP_NAME = "nbci-bench.stamp"
POLL_SECONDS = 0.05
FOREIGN_EVERY = 5  # sample the process table every 5th poll
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
MARKER = "NBCI_BENCH_RUN"  # in the environment of every process the benchmark starts
LOG_TAIL_LINES = 15


def log(message: str) -> None:
    """Progress goes to stderr, so stdout carries only the report."""
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- virtualenv


def venv_fingerprint() -> str:
    """What the cached virtualenv was built from: packages, project metadata, base Python."""
    digest = hashlib.sha256()
    digest.update(" ".join(VENV_PACKAGES).encode())
    digest.update((REPO_ROOT / "pyproject.toml").read_bytes())
    digest.update(sys.version.encode())
    return digest.hexdigest()


def venv_python(venv_dir: Path) -> Path:
    return venv_dir / "bin" / "python"


def is_venv_ready(venv_dir: Path) -> bool:
    stamp = venv_dir / STAMP_NAME
    return venv_python(venv_dir).exists() and stamp.exists() and stamp.read_text() == venv_fingerprint()


def ensure_venv(venv_dir: Path) -> Path:
    """Create or update the benchmark virtualenv; return its Python."""
    python = venv_python(venv_dir)
    if is_venv_ready(venv_dir):
        return python
    log(f"preparing virtualenv {venv_dir} (first run only; a few minutes)")
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv_dir)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet"]
    subprocess.run(pip + list(VENV_PACKAGES), check=True)
    subprocess.run(pip + ["-e", str(REPO_ROOT)], check=True)
    # A kernelspec inside the venv names its Python by absolute path.
    subprocess.run([str(python), "-m", "ipykernel", "install", "--sys-prefix", "--name", "python3"],
                   check=True, stdout=subprocess.DEVNULL)
    # Build matplotlib's font cache now, not inside the first timed notebook.
    subprocess.run([str(python), "-c", "import matplotlib.pyplot, pandas"], check=True)
    (venv_dir / STAMP_NAME).write_text(venv_fingerprint())
    return python


def running_in(venv_dir: Path) -> bool:
    return Path(sys.prefix).resolve() == venv_dir.resolve()


def venv_environ(venv_dir: Path) -> Dict[str, str]:
    """The environment every method runs in: the venv's ``bin`` first on ``PATH``."""
    env = dict(os.environ)
    env["VIRTUAL_ENV"] = str(venv_dir)
    env["PATH"] = os.pathsep.join([str(venv_dir / "bin"), env.get("PATH", "")])
    env.pop("PYTHONHOME", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # let every method keep its bytecode caches
    env.setdefault(MARKER, uuid.uuid4().hex)
    return env


def check_kernelspec(venv_dir: Path) -> str:
    """Fail unless the ``python3`` kernelspec starts this venv's Python; return its argv[0]."""
    from jupyter_client.kernelspec import KernelSpecManager

    argv0 = KernelSpecManager().get_kernel_spec("python3").argv[0]
    if argv0 in ("python", "python3") or Path(argv0).parent.resolve() == (venv_dir / "bin").resolve():
        return argv0
    raise SystemExit(f"kernelspec python3 runs {argv0}, not {venv_dir}/bin/python: "
                     "remove the overriding kernelspec (see `jupyter kernelspec list`)")


# --------------------------------------------------------------------------- machine


@dataclass
class Machine:
    """Where the numbers were measured."""

    cpu: str
    cores: int
    memory_gib: float
    system: str
    python: str
    packages: Dict[str, str]
    nbci_commit: str
    load_average: List[float]

    def describe(self) -> List[str]:
        versions = ", ".join(f"{name} {version}" for name, version in self.packages.items())
        return [
            f"- CPU: {self.cpu}, {self.cores} cores, {self.memory_gib:.0f} GiB RAM",
            f"- System: {self.system}; Python {self.python}",
            f"- Packages: {versions}",
            f"- nbci commit: {self.nbci_commit}; load average at start: "
            + " ".join(f"{x:.2f}" for x in self.load_average),
        ]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def memory_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return 0.0


def package_versions() -> Dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for name in REPORTED_PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "missing"
    return versions


def git_commit() -> str:
    result = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True)
    return result.stdout.strip() or "unknown"


def describe_machine() -> Machine:
    return Machine(
        cpu=cpu_model(),
        cores=os.cpu_count() or 1,
        memory_gib=memory_gib(),
        system=platform.platform(),
        python=platform.python_version(),
        packages=package_versions(),
        nbci_commit=git_commit(),
        load_average=list(os.getloadavg()),
    )


# --------------------------------------------------------------------------- methods


@dataclass
class Workspace:
    """One timed run's folders: a fresh corpus copy, an output folder and a log file."""

    corpus: Path
    output: Path
    log: Path
    notebooks: int


@dataclass(frozen=True)
class Method:
    """A way of running the corpus: a command (run in the corpus copy) and a success check."""

    name: str
    label: str
    command: Callable[[Workspace], List[str]]
    verify: Callable[[Workspace], Optional[str]]  # a failure reason, or None
    executed_copies: bool = False  # leaves executed notebooks in Workspace.output
    prepare: Optional[Callable[[Workspace, Dict[str, str]], None]] = None  # untimed, before the command


def shell_loop(body: str) -> Callable[[Workspace], List[str]]:
    """A bash loop over the corpus, one notebook at a time, stopping at the first failure."""
    def command(ws: Workspace) -> List[str]:
        script = f'set -e; for nb in *.ipynb; do {body}; done'
        return ["bash", "-c", script, "loop", str(ws.output)]
    return command


def verify_copies(ws: Workspace) -> Optional[str]:
    found = len(list(ws.output.glob("*.ipynb")))
    return None if found == ws.notebooks else f"{found} of {ws.notebooks} executed copies written"


def verify_pytest(ws: Workspace) -> Optional[str]:
    text = ws.log.read_text(errors="replace")
    match = re.search(r"(\d+) passed", text)
    passed = int(match.group(1)) if match else 0
    return None if passed == ws.notebooks else f"pytest reports {passed} of {ws.notebooks} passed"


def verify_nbci(ws: Workspace) -> Optional[str]:
    path = ws.output / "results.json"
    if not path.exists():
        return "no results.json"
    summary = json.loads(path.read_text()).get("summary", {})
    if summary.get("total") == summary.get("passed") == ws.notebooks:
        return None
    return f"results.json: {summary.get('passed')} of {summary.get('total')} passed, {ws.notebooks} expected"


def verify_nbci_forked(ws: Workspace) -> Optional[str]:
    """As ``verify_nbci``, and no kernel fell back to a normal start (nbci says why on stderr)."""
    text = ws.log.read_text(errors="replace")
    fallback = re.search(r"--kernel-start fork: starting kernels normally: .*", text)
    return verify_nbci(ws) or (f"not forked: {fallback.group(0)}" if fallback else None)


def verify_nbci_html(ws: Workspace) -> Optional[str]:
    """As ``verify_nbci``, and a page per notebook plus index.html were written."""
    pages = len(list(ws.output.rglob("*.html"))) if ws.output.is_dir() else 0
    return verify_nbci(ws) or (None if pages == ws.notebooks + 1 else f"{pages} HTML files, {ws.notebooks + 1} expected")


def verify_nbci_coverage(ws: Workspace) -> Optional[str]:
    """As ``verify_nbci``, and every notebook's measurement was saved and the reports written."""
    found = verify_nbci(ws)
    if found or not (ws.output / "coverage.xml").is_file():
        return found or "no coverage.xml"
    notebooks = json.loads((ws.output / "results.json").read_text())["notebooks"]
    incomplete = [nb["path"] for nb in notebooks if (nb.get("coverage") or {}).get("state") != "complete"]
    return f"coverage not complete for {', '.join(incomplete)}" if incomplete else None


def verify_nbci_check(ws: Workspace) -> Optional[str]:
    """Every notebook passed or changed (a changed one is a false alarm: nothing changed but the run)."""
    path = ws.output / "results.json"
    if not path.exists():
        return "no results.json"
    summary = json.loads(path.read_text()).get("summary", {})
    if summary.get("changed"):
        log(f"  nbci-check: {summary['changed']} of {summary.get('total')} notebooks changed (false alarms)")
    if summary.get("total") == summary.get("passed", 0) + summary.get("changed", 0) == ws.notebooks:
        return None
    return f"results.json: {summary.get('passed')} passed, {summary.get('changed')} changed of {summary.get('total')}"


def commit_outputs(ws: Workspace, env: Dict[str, str]) -> None:
    """Give the corpus copy committed outputs, as a repository checked with --check-outputs has them."""
    subprocess.run(["nbci", "run", "--update-outputs", "--output-dir", str(ws.output.parent / "committing"), "."],
                   cwd=ws.corpus, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def build_methods(jobs: int) -> Dict[str, Method]:
    """Every method the benchmark knows, by name, in table order."""
    methods = [
        Method("nbci", f"nbci run --jobs {jobs}",
               lambda ws: ["nbci", "run", "--jobs", str(jobs), "--output-dir", str(ws.output), "."],
               verify_nbci, executed_copies=True),
        Method("nbci-html", f"nbci run --jobs {jobs} --html",
               lambda ws: ["nbci", "run", "--jobs", str(jobs), "--html", "--output-dir", str(ws.output), "."],
               verify_nbci_html),
        Method("nbci-outputs", f"nbci run --jobs {jobs} (notebooks with committed outputs)",
               lambda ws: ["nbci", "run", "--jobs", str(jobs), "--output-dir", str(ws.output), "."],
               verify_nbci, prepare=commit_outputs),
        Method("nbci-check", f"nbci run --jobs {jobs} --check-outputs warn (notebooks with committed outputs)",
               lambda ws: ["nbci", "run", "--jobs", str(jobs), "--check-outputs", "warn", "--output-dir", str(ws.output),
                           "."],
               verify_nbci_check, prepare=commit_outputs),
        Method("nbci-fork", f"nbci run --jobs {jobs} --kernel-start fork (PYTHONHASHSEED=0)",
               lambda ws: ["env", "PYTHONHASHSEED=0", "nbci", "run", "--jobs", str(jobs), "--kernel-start", "fork",
                           "--output-dir", str(ws.output), "."],
               verify_nbci_forked),
        Method("nbci-coverage", f"nbci run --jobs {jobs} --coverage --coverage-source numpy",
               lambda ws: ["nbci", "run", "--jobs", str(jobs), "--coverage", "--coverage-source", "numpy",
                           "--output-dir", str(ws.output), "."],
               verify_nbci_coverage),
        Method("nbconvert", "jupyter nbconvert --execute (loop)",
               shell_loop('jupyter nbconvert --to notebook --execute "$nb" --output-dir "$1"'),
               verify_copies, executed_copies=True),
        Method("papermill", "papermill (loop)",
               shell_loop('papermill "$nb" "$1/$nb"'), verify_copies, executed_copies=True),
        Method("nbmake", "pytest --nbmake",
               lambda ws: ["pytest", "--nbmake", "."], verify_pytest),
        Method("nbmake-n2", "pytest --nbmake -n 2",
               lambda ws: ["pytest", "--nbmake", "-n", "2", "."], verify_pytest),
    ]
    return {method.name: method for method in methods}


# --------------------------------------------------------------------------- running


@dataclass
class Outcome:
    """One timed run of one method."""

    method: str
    round: int
    seconds: float
    returncode: int
    failure: Optional[str] = None
    peak_rss: Optional[int] = None  # bytes: VmHWM of the launched process itself
    foreign_cpu: float = 0.0  # CPU seconds other processes used meanwhile: a noise indicator
    output: Optional[Path] = None  # the run's output folder (executed copies, results.json)

    @property
    def ok(self) -> bool:
        return self.failure is None


def busy_seconds() -> float:
    """CPU time the whole machine has spent busy since boot, all cores summed (``/proc/stat``)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


class ForeignCpu:
    """CPU seconds used during a run by processes outside the benchmark: a noise indicator.

    The benchmark's own processes carry ``MARKER`` in their environment, which kernels and
    other descendants inherit even when they start a new session or outlive their parent.
    Every other process (but this one) is sampled from ``/proc``; a process is counted from
    its first sample, or from zero if it started after the run began.
    """

    def __init__(self, token: str) -> None:
        self.token = f"{MARKER}={token}".encode()
        self.start_ticks = float(Path("/proc/uptime").read_text().split()[0]) * CLOCK_TICKS
        self.ours: Dict[Tuple[int, int], bool] = {}
        self.first: Dict[Tuple[int, int], float] = {}
        self.last: Dict[Tuple[int, int], float] = {}

    def is_ours(self, pid: int) -> bool:
        if pid == os.getpid():
            return True
        try:
            return self.token in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            return True  # gone already: nothing to count

    def sample(self) -> None:
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                fields = Path(f"/proc/{entry.name}/stat").read_bytes().rsplit(b")", 1)[1].split()
            except OSError:
                continue
            key = (int(entry.name), int(fields[19]))  # pid, start time: pids get reused
            if key not in self.ours:
                self.ours[key] = self.is_ours(key[0])
            if not self.ours[key]:
                cpu = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
                self.first.setdefault(key, 0.0 if key[1] > self.start_ticks else cpu)
                self.last[key] = cpu

    def seconds(self) -> float:
        return sum(self.last[key] - self.first[key] for key in self.last)


def wait_for_quiet(max_wait: float, threshold: float = 0.15) -> Optional[float]:
    """Wait until other processes use under ``threshold`` of the machine for a second.

    Returns the seconds waited, or None if the machine stayed busy for ``max_wait``.
    """
    start = time.perf_counter()
    cores = os.cpu_count() or 1
    while True:
        before = busy_seconds() - time.process_time()
        time.sleep(1.0)
        if (busy_seconds() - time.process_time() - before) / cores < threshold:
            return time.perf_counter() - start
        if time.perf_counter() - start > max_wait:
            return None


def proc_status(pid: int) -> Dict[str, str]:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


def peak_rss_of(pid: int, own_name: str) -> Optional[int]:
    """The process's RSS high-water mark (VmHWM) in bytes, once it has exec'd its program."""
    status = proc_status(pid)
    if status.get("Name", "").strip() in ("", own_name) or "VmHWM" not in status:
        return None
    return int(status["VmHWM"].split()[0]) * 1024


def run_command(argv: List[str], ws: Workspace, env: Dict[str, str], timeout: float) -> Outcome:
    """Run one command in the corpus copy, timing it, polling its own peak RSS and the noise."""
    own_name = proc_status(os.getpid()).get("Name", "").strip()
    peak: Optional[int] = None
    foreign = ForeignCpu(env[MARKER])
    foreign.sample()
    with ws.log.open("wb") as sink:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=ws.corpus, env=env, stdout=sink, stderr=subprocess.STDOUT)
        try:
            for tick in itertools.count():
                if proc.poll() is not None:
                    break
                peak = max(peak or 0, peak_rss_of(proc.pid, own_name) or 0) or None
                if tick % FOREIGN_EVERY == 0:
                    foreign.sample()
                if time.perf_counter() - start > timeout:
                    proc.kill()
                time.sleep(POLL_SECONDS)
        finally:
            if proc.poll() is None:
                proc.terminate()
                proc.wait()
        seconds = time.perf_counter() - start
    foreign.sample()
    return Outcome("", 0, seconds, proc.returncode, peak_rss=peak, foreign_cpu=foreign.seconds())


def prepare_workspace(source: Path, root: Path, tag: str, notebooks: int) -> Workspace:
    """A fresh copy of the corpus plus an empty output folder, under ``root/tag``."""
    base = root / tag
    shutil.copytree(source, base / "corpus")
    (base / "output").mkdir()
    return Workspace(base / "corpus", base / "output", base / "run.log", notebooks)


def log_tail(path: Path) -> str:
    lines = path.read_text(errors="replace").splitlines()
    return "\n".join("    " + line for line in lines[-LOG_TAIL_LINES:])


def run_method(method: Method, ws: Workspace, env: Dict[str, str], round_: int, timeout: float) -> Outcome:
    """Time one method once; a non-zero exit or a failed check marks the outcome failed."""
    if method.prepare is not None:
        method.prepare(ws, env)
    outcome = run_command(method.command(ws), ws, env, timeout)
    outcome.method, outcome.round, outcome.output = method.name, round_, ws.output
    if outcome.returncode != 0:
        outcome.failure = f"exit status {outcome.returncode}"
    else:
        outcome.failure = method.verify(ws)
    if outcome.failure:
        log(f"  {method.name} FAILED ({outcome.failure}); end of its log:\n{log_tail(ws.log)}")
    else:
        log(f"  {method.name}: {outcome.seconds:.2f} s (other processes used {outcome.foreign_cpu:.1f} CPU s)")
    return outcome


# --------------------------------------------------------------------------- floor


def parse_time(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def recorded_cell_seconds(notebook: Path) -> float:
    """Sum of ``iopub.execute_input`` -> ``shell.execute_reply`` over a notebook's code cells."""
    data = json.loads(notebook.read_text(encoding="utf-8"))
    total = 0.0
    for cell in data.get("cells", []):
        timing = cell.get("metadata", {}).get("execution", {})
        begin, end = timing.get("iopub.execute_input"), timing.get("shell.execute_reply")
        if cell.get("cell_type") == "code" and begin and end:
            total += (parse_time(end) - parse_time(begin)).total_seconds()
    return total


def corpus_cell_seconds(folder: Path) -> float:
    return sum(recorded_cell_seconds(path) for path in sorted(folder.glob("*.ipynb")))


def cpu_probe_seconds(n: int = 10_000_000) -> float:
    """Time a fixed pure-Python loop: it slows down when the host steals CPU unseen by ``/proc``."""
    start = time.perf_counter()
    total = 0
    for i in range(n):
        total += i % 7
    return time.perf_counter() - start


def kernel_start_seconds() -> float:
    """Start a ``python3`` kernel, wait until it answers ``kernel_info`` and IOPub delivers, shut it
    down: the time to ready. (jupyter_client's ``wait_for_ready`` then also waits 0.2 s for IOPub
    to fall quiet; no runner needs that, so it is not counted.)"""
    from queue import Empty

    from jupyter_client.manager import KernelManager

    start = time.perf_counter()
    manager = KernelManager(kernel_name="python3")
    manager.start_kernel(stderr=subprocess.DEVNULL)
    client = manager.client()
    client.start_channels()
    try:
        while time.perf_counter() - start < 120:
            client.kernel_info()
            try:
                if client.get_shell_msg(timeout=1)["msg_type"] != "kernel_info_reply":
                    continue
                client.get_iopub_msg(timeout=0.1)
                break
            except Empty:
                continue
        else:
            raise RuntimeError("the python3 kernel did not answer within 120 s")
        return time.perf_counter() - start
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


@dataclass
class Floor:
    """The best any runner could do: recorded cell time over the cores, plus one kernel start."""

    cell_seconds: float
    cores: int
    kernel_start: float
    source: str  # which method's executed copies the cell times were read from

    @property
    def seconds(self) -> float:
        return self.cell_seconds / self.cores + self.kernel_start


# --------------------------------------------------------------------------- report


@dataclass
class MethodSummary:
    """All runs of one method, summarised."""

    name: str
    label: str
    seconds: List[float]
    failures: List[str] = field(default_factory=list)
    peak_rss: List[int] = field(default_factory=list)
    foreign_cpu: List[float] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.seconds) and not self.failures

    @property
    def median(self) -> Optional[float]:
        return statistics.median(self.seconds) if self.ok else None

    @property
    def noise(self) -> Optional[float]:
        """Median share of the machine's CPU that other processes used during the runs."""
        if not self.seconds:
            return None
        shares = [cpu / (secs * (os.cpu_count() or 1)) for cpu, secs in zip(self.foreign_cpu, self.seconds)]
        return statistics.median(shares)


@dataclass
class Report:
    """What one benchmark invocation measured."""

    machine: Machine
    repeat: int
    scale: float
    jobs: int
    methods: List[MethodSummary]
    floor: Optional[Floor]
    kernel_starts: List[float]
    cell_times: Dict[str, float]  # median recorded cell time, per method with executed copies
    cpu_probes: List[float]  # seconds of a fixed loop, once per round

    def median_of(self, name: str) -> Optional[float]:
        return next((m.median for m in self.methods if m.name == name), None)

    def to_json(self) -> Dict[str, object]:
        data = asdict(self)
        data["floor_seconds"] = self.floor.seconds if self.floor else None
        for entry, method in zip(data["methods"], self.methods):
            entry.update(ok=method.ok, median=method.median)
        return data


def ratio(value: Optional[float], base: Optional[float]) -> str:
    return f"{value / base:.2f}" if value is not None and base else "n/a"


def markdown_table(report: Report) -> List[str]:
    floor = report.floor.seconds if report.floor else None
    nbci = report.median_of("nbci")
    lines = ["| method | median seconds | x floor | x nbci | runs (s) | other load |",
             "| --- | ---: | ---: | ---: | --- | ---: |"]
    for method in report.methods:
        if not method.ok:
            lines.append(f"| `{method.label}` | failed ({len(method.failures)} of {report.repeat} runs) | | | | |")
            continue
        runs = ", ".join(f"{s:.1f}" for s in method.seconds)
        lines.append(f"| `{method.label}` | {method.median:.2f} | {ratio(method.median, floor)} | "
                     f"{ratio(method.median, nbci)} | {runs} | {method.noise:.0%} |")
    if report.floor:
        lines.append(f"| floor | {report.floor.seconds:.2f} | 1.00 | {ratio(report.floor.seconds, nbci)} | | |")
    return lines


def floor_lines(report: Report) -> List[str]:
    if not report.floor:
        return ["Floor: n/a (no method left executed copies to read cell times from)."]
    f = report.floor
    nbci = report.median_of("nbci")
    others = [f"{name} {seconds:.2f} s (floor {seconds / f.cores + f.kernel_start:.2f} s, "
              f"nbci x{ratio(nbci, seconds / f.cores + f.kernel_start)})"
              for name, seconds in report.cell_times.items() if name != f.source]
    lines = [f"Floor = {f.cell_seconds:.2f} s recorded cell time ({f.source} copies, median of runs) "
             f"/ {f.cores} cores + {f.kernel_start:.2f} s kernel start (median of "
             f"{len(report.kernel_starts)}) = {f.seconds:.2f} s."]
    if others:
        lines.append("The same corpus's recorded cell time in other runners' copies: " + "; ".join(others) + ".")
    return lines


def check_lines(report: Report) -> List[str]:
    """What ``--check-outputs warn`` costs: nbci-check against nbci-outputs (the same committed outputs, unchecked)."""
    checked, unchecked = report.median_of("nbci-check"), report.median_of("nbci-outputs")
    if checked is None or unchecked is None:
        return []
    pairs = [a / b for a, b in zip(*(m.seconds for n in ("nbci-check", "nbci-outputs")
                                     for m in report.methods if m.name == n))]
    return [f"--check-outputs warn: {ratio(checked, unchecked)}x the run of the same notebooks unchecked "
            f"({checked:.2f} s against {unchecked:.2f} s, medians); per round "
            f"{', '.join(f'{p:.2f}' for p in pairs)}, median {statistics.median(pairs):.2f}x."]


def rss_lines(report: Report) -> List[str]:
    nbci = next((m for m in report.methods if m.name == "nbci" and m.peak_rss), None)
    if not nbci:
        return []
    mib = [rss / 2**20 for rss in nbci.peak_rss]
    return [f"nbci engine peak RSS (VmHWM of the nbci process itself, kernels excluded): "
            f"median {statistics.median(mib):.0f} MiB, max {max(mib):.0f} MiB."]


def noise_lines(report: Report) -> List[str]:
    """CPU seconds that processes outside the benchmark used during each method's runs."""
    parts = [f"{m.name} {'/'.join(f'{x:.1f}' for x in m.foreign_cpu)}" for m in report.methods if m.foreign_cpu]
    probes = ", ".join(f"{x:.3f}" for x in report.cpu_probes)
    return ["Other load = median share of the machine's CPU used by processes outside the benchmark "
            "during a run; CPU seconds per run: " + "; ".join(parts) + ".",
            f"CPU speed probe (seconds of a fixed loop, once per round; steady when the host is): {probes}."]


def render(report: Report) -> str:
    header = [f"## Notebook execution benchmark ({len(corpus.build(report.scale))} notebooks, "
              f"scale {report.scale:g}, median of {report.repeat} interleaved runs)", ""]
    lines = (header + markdown_table(report) + [""] + floor_lines(report) + rss_lines(report) + check_lines(report)
             + noise_lines(report))
    lines += ["", "Machine:"] + report.machine.describe()
    for method in report.methods:
        for failure in method.failures:
            lines.append(f"- {method.name} failed: {failure}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each method (default 3)")
    parser.add_argument("--methods", default="all",
                        help="comma list of: nbci, nbci-html, nbci-outputs, nbci-check, nbci-fork, nbconvert, papermill, nbmake, nbmake-n2 (default all)")
    parser.add_argument("--scale", type=float, default=1.0, help="work multiplier of the compute notebooks")
    parser.add_argument("--jobs", type=int, default=2, help="nbci --jobs (default 2)")
    parser.add_argument("--venv-dir", type=Path, default=DEFAULT_VENV_DIR,
                        help=f"cached virtualenv for every method (default {DEFAULT_VENV_DIR})")
    parser.add_argument("--json", type=Path, help="also write the report as JSON to this file")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds before one run is killed")
    parser.add_argument("--quiet-wait", type=float, default=120.0,
                        help="before each run, wait up to this long for other processes to go idle (0: don't)")
    args = parser.parse_args(argv)
    known = build_methods(args.jobs)
    args.method_names = list(known) if args.methods == "all" else [m.strip() for m in args.methods.split(",")]
    unknown = [m for m in args.method_names if m not in known]
    if unknown or args.repeat < 1 or args.scale <= 0 or args.jobs < 1:
        parser.error(f"bad options: unknown methods {unknown}" if unknown else "--repeat, --scale, --jobs must be positive")
    args.venv_dir = args.venv_dir.resolve()
    return args


def recorded_cell_times(outcomes: List[Outcome], methods: Dict[str, Method]) -> Dict[str, float]:
    """Median recorded cell time of the corpus, per method that leaves executed copies."""
    times = {}
    for name, method in methods.items():
        runs = [o for o in outcomes if o.method == name and o.ok and o.output and method.executed_copies]
        if runs:
            times[name] = statistics.median(corpus_cell_seconds(o.output) for o in runs)
    return times


def choose_floor(cell_times: Dict[str, float], kernel_starts: List[float]) -> Optional[Floor]:
    """The floor from the first method in table order (nbci when it ran) with cell times."""
    for name, seconds in cell_times.items():
        return Floor(seconds, os.cpu_count() or 1, statistics.median(kernel_starts), name)
    return None


def benchmark(args: argparse.Namespace) -> Report:
    """Run every selected method ``repeat`` times, round-robin, and summarise."""
    env = venv_environ(args.venv_dir)
    os.environ.update(env)  # the kernel-start probe resolves "python3" the same way
    argv0 = check_kernelspec(args.venv_dir)
    log(f"kernelspec python3 -> {argv0}")
    machine = describe_machine()
    methods = {name: build_methods(args.jobs)[name] for name in args.method_names}
    outcomes: List[Outcome] = []
    kernel_starts: List[float] = []
    probes: List[float] = []
    with tempfile.TemporaryDirectory(prefix="nbci-bench-") as tmp:
        root = Path(tmp)
        notebooks = len(corpus.write_corpus(root / "source", args.scale))
        warm_up = "import pandas, matplotlib.pyplot, nbclient, nbconvert, papermill, nbci.cli"
        subprocess.run([sys.executable, "-c", warm_up], check=True, env=env)  # file cache, bytecode
        for round_ in range(1, args.repeat + 1):
            probes.append(cpu_probe_seconds())
            kernel_starts.append(kernel_start_seconds())
            log(f"round {round_}/{args.repeat} (kernel start {kernel_starts[-1]:.2f} s, "
                f"CPU probe {probes[-1]:.3f} s)")
            for method in round_order(list(methods.values()), round_):
                ws = prepare_workspace(root / "source", root, f"{method.name}-{round_}", notebooks)
                settle(args.quiet_wait)
                outcomes.append(run_method(method, ws, env, round_, args.timeout))
        cell_times = recorded_cell_times(outcomes, methods)
    summaries = [summarise(method, outcomes) for method in methods.values()]
    return Report(machine, args.repeat, args.scale, args.jobs, summaries,
                  choose_floor(cell_times, kernel_starts), kernel_starts, cell_times, probes)


def round_order(methods: List[Method], round_: int) -> List[Method]:
    """The methods in table order in odd rounds and reversed in even ones, so that none always runs
    first (on a cold cache) or after the same neighbour."""
    return methods if round_ % 2 else methods[::-1]


def settle(max_wait: float) -> None:
    """Before a timed run, give other work on the machine up to ``max_wait`` seconds to finish."""
    if max_wait <= 0:
        return
    waited = wait_for_quiet(max_wait)
    if waited is None:
        log(f"  machine still busy after {max_wait:.0f} s; timing anyway")
    elif waited > 1.5:
        log(f"  waited {waited:.0f} s for other processes to quieten")


def summarise(method: Method, outcomes: List[Outcome]) -> MethodSummary:
    mine = [o for o in outcomes if o.method == method.name]
    return MethodSummary(
        name=method.name,
        label=method.label,
        seconds=[round(o.seconds, 3) for o in mine if o.ok],
        failures=[f"round {o.round}: {o.failure}" for o in mine if not o.ok],
        peak_rss=[o.peak_rss for o in mine if o.ok and o.peak_rss],
        foreign_cpu=[round(o.foreign_cpu, 2) for o in mine if o.ok],
    )


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up like Ctrl-C does
    python = ensure_venv(args.venv_dir)
    if not running_in(args.venv_dir):
        script_args = list(argv) if argv is not None else sys.argv[1:]
        os.execve(str(python), [str(python), str(Path(__file__).resolve()), *script_args],
                  venv_environ(args.venv_dir))
    report = benchmark(args)
    print(render(report))
    if args.json:
        args.json.write_text(json.dumps(report.to_json(), indent=2) + "\n", encoding="utf-8")
        log(f"wrote {args.json}")
    return 0 if all(m.ok for m in report.methods) else 1


if __name__ == "__main__":
    raise SystemExit(main())
