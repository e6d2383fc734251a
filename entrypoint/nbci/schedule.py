"""Schedule a run: longest expected first, ``jobs`` at a time, on this process or helper processes.

``Scheduler`` is the run as the coordinating process sees it: it orders the jobs and hands them to
one ``runner.Runner`` in this process (one job) or to helper processes (``nbci.helpers``), each
running a ``Runner`` for a group of workers, and collects every result for the reporters.
"""

from __future__ import annotations

import collections
import math
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

from nbci.config import Config
from nbci.report import Reporter
from nbci.execute import describe
from nbci.results import CANCELLED, ERROR, CellError, NotebookResult, RunResult
from nbci.runner import Job, Runner, Sink, engine_cpu, execution_cache

# One process drives about this many workers before its own CPU (message handling, copies) is what
# the kernels wait for; more jobs than that are spread over helper processes.
WORKERS_PER_HELPER = 4
NOT_FINISHED = "NotFinished"  # the ename of a notebook a failed run never finished


def order_jobs(paths: Sequence[str], expected: Dict[str, float]) -> List[Job]:
    """Jobs sorted longest expected first (ties by path), so the run does not end on a straggler."""
    jobs = [Job(i, path, expected.get(path, 0.0)) for i, path in enumerate(paths)]
    return sorted(jobs, key=lambda job: (-job.expected, job.path))


@dataclass
class ReportingSink(Sink):
    """Feeds the reporters and keeps every finished result by its job's index."""

    reporters: Sequence[Reporter]
    done: Dict[int, NotebookResult] = field(default_factory=dict)
    problems: List[str] = field(default_factory=list)  # reporters that failed, one line each

    def started(self, job: Job) -> None:
        self._tell(lambda reporter: reporter.notebook_started(job.path))

    def heartbeat(self, path: str, cell_index: Optional[int], source_line: str, elapsed: float,
                  rss: Optional[int]) -> None:
        self._tell(lambda reporter: reporter.heartbeat(path, cell_index, source_line, elapsed, rss))

    def finished(self, job: Job, result: NotebookResult, log: str) -> None:
        self.done[job.index] = result
        self._tell(lambda reporter: reporter.notebook_finished(result, log))

    def _tell(self, event: Callable[[Reporter], None]) -> None:
        """Give every reporter the event; one that raises is a problem of the run, not of the others."""
        for reporter in self.reporters:
            try:
                event(reporter)
            except Exception as exc:
                problem = f"internal error in {getattr(reporter, 'name', type(reporter).__name__)}: {describe(exc)}"
                if problem not in self.problems:
                    self.problems.append(problem)


def helper_sizes(jobs: int) -> List[int]:
    """Workers per helper process for ``jobs`` workers: none (run here) for one job or on Windows
    (where no signal asks a helper to cancel), else groups of at most ``WORKERS_PER_HELPER``, as
    even as possible."""
    if jobs <= 1 or os.name == "nt":
        return []
    return even_split(jobs, math.ceil(jobs / WORKERS_PER_HELPER))


def even_split(jobs: int, count: int) -> List[int]:
    """``jobs`` workers in ``count`` groups whose sizes differ by at most one."""
    return [jobs // count + (1 if i < jobs % count else 0) for i in range(count)]


@dataclass
class Scheduler:
    """Runs the jobs of one ``nbci run`` and collects their results (the coordinating process)."""

    config: Config
    reporters: Sequence[Reporter]
    cancelled: bool = False
    signal: Optional[int] = None  # the signal that cancelled the run
    duration: float = 0.0
    helpers_cpu: Optional[float] = None  # CPU seconds of the helper processes, when there were any
    sink: ReportingSink = field(init=False)

    def __post_init__(self) -> None:
        self.sink = ReportingSink(self.reporters)
        self._runner: Optional[Runner] = None
        self._helpers = None
        self._jobs: List[Job] = []

    def cancel(self, signum: Optional[int] = None) -> None:
        """Stop taking notebooks and kill every kernel now (signal-handler safe); remember the signal."""
        self.cancelled = True
        self.signal = self.signal or signum
        for part in (self._runner, self._helpers):
            if part is not None:
                part.cancel(signum)

    async def run(self, paths: Sequence[str], expected: Dict[str, float]) -> RunResult:
        started = time.monotonic()
        self._jobs = order_jobs(paths, expected)
        queue = collections.deque(self._jobs)
        for reporter in self.reporters:
            reporter.run_started(list(paths), self.config)
        jobs = min(self.config.jobs, len(queue)) or 1
        sizes = helper_sizes(jobs) if self.config.helpers is None else helper_sizes_of(jobs, self.config.helpers)
        try:
            if self.cancelled:
                return self.result()
            if sizes:
                from nbci.helpers import HelperGroup

                self._helpers = HelperGroup(self.config, self.sink, sizes)
                await self._helpers.run(queue)
                self.helpers_cpu = self._helpers.cpu
            else:
                self._runner = Runner(self.config, self.sink, jobs)
                self._runner.add(queue)
                self._runner.close()
                await self._runner.run()
        finally:
            cache = execution_cache(self.config)
            if cache is not None:
                cache.prune()
            self.duration = time.monotonic() - started
        return self.result()

    def result(self) -> RunResult:
        """Every notebook's result in discovery order: those that finished, and the others as
        cancelled (the run was) or as nbci's errors: a run never drops a notebook silently."""
        done = dict(self.sink.done)
        for job in self._jobs:
            done.setdefault(job.index, unfinished_result(job.path, self.cancelled))
        return RunResult([done[i] for i in sorted(done)], self.duration, self.cancelled,
                         engine_peak_rss=engine_peak_rss(), engine_cpu=engine_cpu(),
                         helpers_cpu=self.helpers_cpu, signal=self.signal, problems=list(self.sink.problems))


def unfinished_result(path: str, cancelled: bool) -> NotebookResult:
    """The result of a notebook the run ended without: cancelled before it started, or nbci failed."""
    if cancelled:
        return NotebookResult(path, CANCELLED, error=CellError("Cancelled", "the run was cancelled before it started"))
    return NotebookResult(path, ERROR, error=CellError(
        NOT_FINISHED, "nbci stopped before this notebook finished (see the run's internal error)"))


def helper_sizes_of(jobs: int, helpers: int) -> List[int]:
    """Workers per helper when ``--helpers`` fixes their number (0: every job in this process)."""
    return even_split(jobs, min(helpers, jobs))


def engine_peak_rss() -> Optional[int]:
    """This process's peak resident memory in bytes; None where the platform does not say. On Linux
    from ``VmHWM``: ``ru_maxrss`` also counts the process that started nbci, as it was before exec."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # macOS counts bytes, Linux KiB


