"""Run many notebooks: longest expected first, ``jobs`` at a time, kernels started ahead of need.

Also owns what happens around one execution: the monitor (peak memory, ``--memory-limit``,
``--notebook-timeout``, heartbeat lines), transient-failure retries, and cancellation.
"""

from __future__ import annotations

import asyncio
import copy
import math
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from nbformat import NotebookNode

from nbci import results as st
from nbci.config import Config
from nbci.execute import (
    InvalidNotebook, Watch, execute, invalid_result, kernel_name, read_notebook,
    write_notebook,
)
from nbci.kernels import Kernel, KernelLauncher, KernelPool, KernelRequest, KernelStartError
from nbci.report import Reporter
from nbci.results import CellError, NotebookResult, RunResult

MEMORY_LIMIT = "MemoryLimitExceeded"  # the ename of a kernel nbci killed for --memory-limit
# Kernels being started or waiting, per worker. A start takes ~0.45 s of wall time (about half of
# it jupyter_client's fixed wait for IOPub to go quiet) while a small notebook runs in ~0.1 s, so one
# kernel ahead per worker leaves workers waiting; two keep them busy at ~50 MiB per idle kernel.
PREFETCH_PER_WORKER = 2
SAMPLE_INTERVAL = 0.25  # seconds between memory samples of a running kernel


@dataclass
class Job:
    """One notebook to run: its place in discovery order, its path and expected duration."""

    index: int
    path: str  # relative to the root, "/" separated
    expected: float = 0.0


@dataclass
class Prepared:
    """A job's notebook, read (or why it could not be), and the kernel it asks for."""

    job: Job
    nb: Optional[NotebookNode] = None
    invalid: Optional[str] = None
    request: Optional[KernelRequest] = None


def order_jobs(paths: Sequence[str], expected: Dict[str, float]) -> List[Job]:
    """Jobs sorted longest expected first (ties by path), so the run does not end on a straggler."""
    jobs = [Job(i, path, expected.get(path, 0.0)) for i, path in enumerate(paths)]
    return sorted(jobs, key=lambda job: (-job.expected, job.path))


def is_transient(result: NotebookResult, retry_on: Optional[str]) -> bool:
    """Whether a failure looks transient: kernel death (not ``--memory-limit``: that repeats), a failed
    start, or an error matching ``retry_on``."""
    if result.status == st.CRASHED:
        return not (result.error and result.error.ename == MEMORY_LIMIT)
    if result.status == st.STARTUP_FAILED:
        return True
    if result.status == st.FAILED and retry_on and result.error:
        return re.search(retry_on, f"{result.error.ename}: {result.error.evalue}") is not None
    return False


@dataclass
class Scheduler:
    """Runs the jobs of one ``nbci run`` and collects their results."""

    config: Config
    reporters: Sequence[Reporter]
    launcher: KernelLauncher = field(init=False)
    pool: KernelPool = field(init=False)
    cancelled: bool = False
    signal: Optional[int] = None  # the signal that cancelled the run
    done: Dict[int, NotebookResult] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.launcher = KernelLauncher(self.config.startup_timeout, kernel_start=self.config.kernel_start)
        self.pool = KernelPool(self.launcher)
        self._prepared: Dict[int, Prepared] = {}

    def cancel(self, signum: Optional[int] = None) -> None:
        """Stop taking notebooks and kill every kernel now (signal-handler safe); remember the signal."""
        self.cancelled = True
        self.signal = self.signal or signum
        self.launcher.kill_all()

    async def run(self, paths: Sequence[str], expected: Dict[str, float]) -> RunResult:
        started = time.monotonic()
        queue = order_jobs(paths, expected)
        try:
            await asyncio.gather(*(self._worker(queue) for _ in range(min(self.config.jobs, len(queue)) or 1)))
        finally:
            await self.pool.drain()
            self.launcher.close()
        return RunResult([self.done[i] for i in sorted(self.done)], time.monotonic() - started, self.cancelled,
                         engine_peak_rss=engine_peak_rss(), signal=self.signal)

    async def _worker(self, queue: List[Job]) -> None:
        while queue and not self.cancelled:
            job = queue.pop(0)
            self._prefetch(queue[: PREFETCH_PER_WORKER * self.config.jobs])
            result = await self._run_with_retries(job)
            self.done[job.index] = result

    def _prepare(self, job: Job) -> Prepared:
        if job.index not in self._prepared:
            prepared = Prepared(job)
            path = self.config.root / job.path
            try:
                prepared.nb = read_notebook(path)
                name = kernel_name(prepared.nb, self.config.kernel)
                prepared.request = KernelRequest(name, path.parent)
            except InvalidNotebook as exc:
                prepared.invalid = str(exc)
            self._prepared[job.index] = prepared
        return self._prepared[job.index]

    def _prefetch(self, upcoming: Sequence[Job]) -> None:
        for job in upcoming:
            prepared = self._prepare(job)
            if prepared.request is not None:
                self.pool.prefetch((job.index, 1), prepared.request)

    async def _run_with_retries(self, job: Job) -> NotebookResult:
        prepared = self._prepare(job)
        del self._prepared[job.index]
        for reporter in self.reporters:
            reporter.notebook_started(job.path)
        nb: Optional[NotebookNode] = None
        if prepared.invalid is not None:
            result = invalid_result(job.path, prepared.invalid)
        else:
            result, nb = await self._attempts(prepared)
        for reporter in self.reporters:
            reporter.notebook_finished(result, nb)
        return result

    async def _attempts(self, prepared: Prepared) -> Tuple[NotebookResult, NotebookNode]:
        """Run until passed, or the failure is not transient, or ``--retries`` are used up."""
        attempt = 0
        while True:
            attempt += 1
            nb = copy.deepcopy(prepared.nb) if self.config.retries else prepared.nb
            result = await self._attempt(prepared.job, nb, prepared.request, attempt)
            if result.ok or self.cancelled or attempt > self.config.retries \
                    or not is_transient(result, self.config.retry_on):
                break
        if attempt > 1 and result.status == st.PASSED:
            result.status = st.FLAKY
        return result, nb

    async def _attempt(self, job: Job, nb: NotebookNode, request: KernelRequest, attempt: int) -> NotebookResult:
        watch = Watch()
        try:
            kernel = await self.pool.acquire((job.index, attempt), request)
        except KernelStartError as exc:
            result = NotebookResult(job.path, st.STARTUP_FAILED, kernel=request.name,
                                    error=CellError("KernelStartError", str(exc)))
        else:
            watch.started = time.monotonic()  # a notebook's own time (and its limit) starts with its kernel ready
            monitor = asyncio.ensure_future(self._monitor(job, kernel, watch))
            try:
                status, error = await execute(nb, kernel, request.cwd, self.config.timeout,
                                              self.config.allow_errors, watch, lambda: self.cancelled)
            finally:
                monitor.cancel()
                self.pool.release(kernel)
            result = NotebookResult(job.path, status, kernel=request.name, error=error, peak_rss=watch.peak_rss)
        result.duration = round(watch.elapsed, 3)
        result.attempts = attempt
        result.output_path = self._write_copy(job, nb, result)
        return result

    def _write_copy(self, job: Job, nb: NotebookNode, result: NotebookResult) -> str:
        """Write the executed (or partial) copy; return its path, relative to the root when inside."""
        nb.metadata["nbci"] = {"status": result.status, "duration": result.duration,
                               "error": asdict(result.error) if result.error else None}
        target = self.config.root / job.path if self.config.inplace else self.config.output_dir / job.path
        write_notebook(nb, target)
        try:
            return target.relative_to(self.config.root).as_posix()
        except ValueError:
            return str(target)

    async def _monitor(self, job: Job, kernel: Kernel, watch: Watch) -> None:
        """Sample memory, enforce the memory and notebook limits, and report a heartbeat."""
        config = self.config
        next_beat = config.heartbeat or math.inf  # None: no heartbeat lines
        while True:
            rss = kernel.tree_rss()
            if rss is not None:
                watch.peak_rss = max(watch.peak_rss or 0, rss)
            if config.memory_limit and rss and rss > config.memory_limit and not watch.kill_reason:
                watch.kill_reason = (st.CRASHED, MEMORY_LIMIT, f"the kernel used {rss / 2**20:.0f} MiB, over --memory-limit "
                                     f"{config.memory_limit / 2**20:.0f} MiB, and was killed")
                kernel.kill_tree()
            if config.notebook_timeout and watch.elapsed > config.notebook_timeout and not watch.kill_reason:
                watch.kill_reason = (st.NOTEBOOK_TIMEOUT, "NotebookTimeout",
                                     f"the notebook ran longer than --notebook-timeout {config.notebook_timeout:g} s")
                kernel.kill_tree()
            if watch.elapsed >= next_beat:
                next_beat += config.heartbeat
                source = first_line(watch.cell_source)
                for reporter in self.reporters:
                    reporter.heartbeat(job.path, watch.cell_index, source, watch.elapsed, rss)
            await asyncio.sleep(SAMPLE_INTERVAL)



def engine_peak_rss() -> Optional[int]:
    """This process's peak resident memory in bytes; None where the platform does not say."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # macOS counts bytes, Linux KiB


def first_line(source: str) -> str:
    stripped = source.strip()
    return stripped.splitlines()[0] if stripped else ""
