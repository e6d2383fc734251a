"""Run many notebooks: longest expected first, ``jobs`` at a time, kernels started ahead of need.

Also owns what happens around one execution: the monitor (peak memory, ``--memory-limit``,
``--notebook-timeout``, heartbeat lines), transient-failure retries, and cancellation.
"""

from __future__ import annotations

import asyncio
import copy
import math
import os
import re
import sys
import time
from pathlib import Path
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import nbformat
from nbformat import NotebookNode

from nbci import results as st
from nbci.cache import Entry, ExecutionCache
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
    warnings: List[str] = field(default_factory=list)
    cache_key: Optional[str] = None  # set when the execution cache may hold or keep this notebook
    cached: Optional[Entry] = None  # the fresh cache entry that stands for running it
    reads: Optional[List[str]] = None  # what the last attempt's kernel read, when recorded for the cache


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
    duration: float = 0.0

    def __post_init__(self) -> None:
        self.launcher = KernelLauncher(self.config.startup_timeout, kernel_start=self.config.kernel_start)
        self.pool = KernelPool(self.launcher)
        self.cache = execution_cache(self.config)
        self._prepared: Dict[int, "asyncio.Future[Prepared]"] = {}

    def cancel(self, signum: Optional[int] = None) -> None:
        """Stop taking notebooks and kill every kernel now (signal-handler safe); remember the signal."""
        self.cancelled = True
        self.signal = self.signal or signum
        self.launcher.kill_all()

    async def run(self, paths: Sequence[str], expected: Dict[str, float]) -> RunResult:
        started = time.monotonic()
        queue = order_jobs(paths, expected)
        for reporter in self.reporters:
            reporter.run_started(list(paths), self.config)
        try:
            await asyncio.gather(*(self._worker(queue) for _ in range(min(self.config.jobs, len(queue)) or 1)))
        finally:
            for task in self._prepared.values():
                task.cancel()
            await self.pool.drain()
            self.launcher.close()
            if self.cache is not None:
                self.cache.prune()
            self.duration = time.monotonic() - started
        return self.result()

    def result(self) -> RunResult:
        """The results of the notebooks that finished, in discovery order."""
        return RunResult([self.done[i] for i in sorted(self.done)], self.duration, self.cancelled,
                         engine_peak_rss=engine_peak_rss(), engine_cpu=engine_cpu(), signal=self.signal)

    async def _worker(self, queue: List[Job]) -> None:
        while queue and not self.cancelled:
            job = queue.pop(0)
            self._prefetch(queue[: PREFETCH_PER_WORKER * self.config.jobs])
            result = await self._run_with_retries(job)
            self.done[job.index] = result

    def _prepare(self, job: Job) -> "asyncio.Future[Prepared]":
        """The job's notebook being read (once, off the event loop), then its kernel being started."""
        if job.index not in self._prepared:
            self._prepared[job.index] = asyncio.ensure_future(self._read(job))
        return self._prepared[job.index]

    async def _read(self, job: Job) -> Prepared:
        prepared = Prepared(job)
        try:
            prepared.nb, prepared.warnings = await asyncio.get_running_loop().run_in_executor(
                None, read_notebook, self.config.root, job.path)
        except InvalidNotebook as exc:
            prepared.invalid = str(exc)
            return prepared
        prepared.request = KernelRequest(kernel_name(prepared.nb, self.config.kernel),
                                         (self.config.root / job.path).parent)
        if self.cache is not None and self.launcher.is_ipykernel(prepared.request.name):
            prepared.cache_key = self.cache.key(prepared.nb, job.path, prepared.request.name)
            prepared.cached, warning = self.cache.lookup(prepared.cache_key)
            prepared.warnings += [warning] if warning else []
            if prepared.cached is not None:
                return prepared  # no kernel needed
        if not self.cancelled:
            self.pool.prefetch((job.index, 1), prepared.request)
        return prepared

    def _prefetch(self, upcoming: Sequence[Job]) -> None:
        for job in upcoming:
            self._prepare(job)

    async def _run_with_retries(self, job: Job) -> NotebookResult:
        prepared = await self._prepare(job)
        del self._prepared[job.index]
        for reporter in self.reporters:
            reporter.notebook_started(job.path)
        nb: Optional[NotebookNode] = None
        if prepared.invalid is not None:
            result = invalid_result(job.path, prepared.invalid)
        elif prepared.cached is not None:
            result, nb = self._reuse(job, prepared.cached)
        else:
            result, nb = await self._attempts(prepared)
            result.warnings = prepared.warnings + result.warnings
            if result.status == st.PASSED and prepared.cache_key and self.cache is not None:
                await asyncio.get_running_loop().run_in_executor(None, self._keep, prepared, result, nb)
        for reporter in self.reporters:
            reporter.notebook_finished(result, nb)
        return result

    def _reuse(self, job: Job, entry: Entry) -> Tuple[NotebookResult, NotebookNode]:
        """The result a cache entry stands for, its executed copy written as a run would write it."""
        nb = nbformat.from_dict(entry.notebook)
        result = NotebookResult(job.path, st.CACHED, kernel=entry.result.get("kernel"),
                                peak_rss=entry.result.get("peak_rss"), cached_from=entry.origin())
        self._write_copy(job, nb, result)
        return result, nb

    def _keep(self, prepared: Prepared, result: NotebookResult, nb: NotebookNode) -> None:
        """Store a passed notebook in the execution cache when its reads were recorded."""
        if prepared.reads is None or prepared.cache_key is None or self.cache is None:
            return
        try:
            self.cache.store(prepared.cache_key, result.to_json(), nb, self.cache.relative_reads(prepared.reads))
        except OSError as exc:
            result.warnings.append(f"not kept in the execution cache: {exc.strerror or exc}")

    async def _attempts(self, prepared: Prepared) -> Tuple[NotebookResult, NotebookNode]:
        """Run until passed, or the failure is not transient, or ``--retries`` are used up."""
        attempt = 0
        while True:
            attempt += 1
            nb = copy.deepcopy(prepared.nb) if self.config.retries else prepared.nb
            result = await self._attempt(prepared, nb, attempt)
            if result.ok or self.cancelled or attempt > self.config.retries \
                    or not is_transient(result, self.config.retry_on):
                break
        if attempt > 1 and result.status == st.PASSED:
            result.status = st.FLAKY
        return result, nb

    async def _attempt(self, prepared: Prepared, nb: NotebookNode, attempt: int) -> NotebookResult:
        job, request = prepared.job, prepared.request
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
                                              self.config.allow_errors, watch, lambda: self.cancelled,
                                              self.config.root if self.cache is not None else None)
                prepared.reads = watch.reads
            finally:
                monitor.cancel()
                self.pool.release(kernel)
            result = NotebookResult(job.path, status, kernel=request.name, error=error, peak_rss=watch.peak_rss,
                                    kernel_output=kernel.output.text() if kernel.output else "",
                                    stopped_at=watch.stopped_at)
        result.duration = round(watch.elapsed, 3)
        result.attempts = attempt
        self._write_copy(job, nb, result)
        return result

    def _write_copy(self, job: Job, nb: NotebookNode, result: NotebookResult) -> None:
        """Write the executed (or partial) copy and set ``result.output_path`` (relative to the root when
        inside). A copy that cannot be written fails a passed notebook; the run goes on either way."""
        nb.metadata["nbci"] = {"status": result.status, "duration": result.duration, "stopped_at": result.stopped_at,
                               "error": asdict(result.error) if result.error else None}
        if self.config.inplace:
            target = Path(os.path.realpath(self.config.root / job.path))  # read from there: inside the root
            base = target.parent
        else:
            target, base = self.config.output_dir / job.path, self.config.output_dir
        try:
            write_notebook(nb, target, base)
        except OSError as exc:
            reason = f"could not write the executed copy {target}: {exc.strerror or exc}"
            if result.ok:
                result.status, result.error = st.FAILED, CellError("OutputWriteError", reason)
            else:
                result.warnings.append(reason)
            return
        try:
            result.output_path = target.relative_to(self.config.root).as_posix()
        except ValueError:
            result.output_path = str(target)

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



def execution_cache(config: Config) -> Optional[ExecutionCache]:
    """The run's execution cache, or None when it is off."""
    if not config.caching or config.cache_dir is None:
        return None
    options = {"timeout": config.timeout, "notebook_timeout": config.notebook_timeout,
               "allow_errors": config.allow_errors, "memory_limit": config.memory_limit}
    return ExecutionCache(config.cache_dir, config.root, config.cache_max_age, list(config.cache_inputs), options)


def engine_cpu() -> float:
    """CPU seconds (user + system) this process has used, its threads included, its children not."""
    times = os.times()
    return times.user + times.system


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
