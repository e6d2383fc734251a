"""Run jobs in this process: a notebook read, its kernel started ahead, executed, retried, copied.

A ``Runner`` takes jobs (all at once, or as a coordinator hands them over) and runs them
``workers`` at a time; it owns what happens around one execution: per-notebook settings and
parameters, the monitor (peak memory, ``--memory-limit``, ``--notebook-timeout``, heartbeat
lines), transient-failure retries, the executed copy, the execution cache, the failure's line in
the notebook's file, and cancellation. It tells a ``Sink`` what happens: the reporters when it runs
in the coordinating process, a channel when it runs in a helper (``nbci.helpers``).
"""

from __future__ import annotations

import asyncio
import collections
import copy
import itertools
import math
import os
import re
import time
from pathlib import Path
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable, Deque, Dict, Iterable, List, Optional, Tuple

import nbformat
from nbformat import NotebookNode

from nbci import child
from nbci import results as st
from nbci.cache import Entry, ExecutionCache
from nbci.code_coverage import (
    COMPLETE, MISSING, PARTIAL, data_file_for, read_contribution, start_code, start_problem, summary_of,
)
from nbci.config import Config
from nbci.execute import (
    InvalidNotebook, Watch, describe, execute, invalid_result, kernel_name, read_notebook,
    write_notebook,
)
from nbci.files import inside
from nbci.installs import install_cells, install_warning
from nbci.locate import failure_line
from nbci.masking import Masker, missing_env_reason
from nbci.kernels import Kernel, KernelLauncher, KernelPool, KernelRequest, KernelStartError
from nbci.outputs import (
    CheckOptions, Mask, MasksFailed, MasksTooSlow, check_outputs, committed_cells, updated_source, write_source,
)
from nbci.parameters import inject
from nbci.report.github import notebook_log
from nbci.results import CellError, NotebookResult, OutputCheck
from nbci.settings import NotebookSettings, settings_for
from nbci.text_notebooks import copy_name, is_text_path

MEMORY_LIMIT = "MemoryLimitExceeded"  # the ename of a kernel nbci killed for --memory-limit
INTERNAL_ERROR = "NbciInternalError"  # the ename of a notebook nbci itself failed on
# Kernels being started or waiting, per worker. A start takes ~0.45 s of wall time (about half of
# it jupyter_client's fixed wait for IOPub to go quiet) while a small notebook runs in ~0.1 s, so one
# kernel ahead per worker leaves workers waiting; two keep them busy at ~50 MiB per idle kernel.
PREFETCH_PER_WORKER = 2
SAMPLE_INTERVAL = 0.25  # seconds between memory samples of a running kernel
UPDATED_STATUSES = (st.PASSED, st.FLAKY, st.CHANGED, st.CACHED)  # --update-outputs writes these back


@dataclass
class Job:
    """One notebook to run: its place in discovery order, its path and expected duration."""

    index: int
    path: str  # relative to the root, "/" separated
    expected: float = 0.0


class Sink:
    """Where a ``Runner`` sends what happens: the reporters (in this process) or a helper's channel."""

    def started(self, job: Job) -> None: ...

    def heartbeat(self, path: str, cell_index: Optional[int], source_line: str, elapsed: float,
                  rss: Optional[int]) -> None: ...

    def finished(self, job: Job, result: NotebookResult, log: str) -> None: ...


@dataclass
class Prepared:
    """A job's notebook, read (or why it could not be), and the kernel it asks for."""

    job: Job
    nb: Optional[NotebookNode] = None
    invalid: Optional[InvalidNotebook] = None
    request: Optional[KernelRequest] = None
    warnings: List[str] = field(default_factory=list)
    settings: NotebookSettings = field(default_factory=NotebookSettings)
    text: str = ""  # the file as read, to find a failure's line in it
    text_sources: Optional[List[str]] = None  # a text notebook's cell sources, as read
    injected_at: Optional[int] = None  # the index of the injected parameters cell
    cache_key: Optional[str] = None  # set when the execution cache may hold or keep this notebook
    cached: Optional[Entry] = None  # the fresh cache entry that stands for running it
    reads: Optional[Dict[str, Any]] = None  # what the last attempt's kernel looked at (nbci.recorder), for the cache
    failure: Optional[Exception] = None  # what nbci raised while preparing it (the job's error)
    committed: Optional[List[Dict[str, Any]]] = None  # the cells as committed, for --check-outputs
    coverage: Optional[Watch] = None  # the last attempt's watch, for how its --coverage measurement ended
    coverage_file: Optional[Path] = None  # the last attempt's --coverage data file (nbci.code_coverage.data_file_for)


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
class Runner:
    """Runs the jobs it is given, ``workers`` at a time, in this process; tells ``sink`` as it goes."""

    config: Config
    sink: Sink
    workers: int
    launcher: KernelLauncher = field(init=False)
    pool: KernelPool = field(init=False)
    cancelled: bool = False

    def __post_init__(self) -> None:
        self.launcher = KernelLauncher(self.config.startup_timeout, kernel_start=self.config.kernel_start)
        self.pool = KernelPool(self.launcher)
        self.cache = execution_cache(self.config)
        self.masker = Masker.from_environment(os.environ, self.config.mask_env)
        self.queue: Deque[Job] = collections.deque()
        self.closed = False  # no more jobs will be added
        self._arrived: Optional[asyncio.Event] = None
        self._prepared: Dict[int, "asyncio.Future[Prepared]"] = {}
        self.held: Dict[int, Job] = {}  # jobs started and not yet reported finished

    def add(self, jobs: Iterable[Job]) -> None:
        """Queue more jobs, in the order given."""
        self.queue.extend(jobs)
        self._wake()

    def close(self) -> None:
        """No more jobs will come: workers end when the queue is empty."""
        self.closed = True
        self._wake()

    def cancel(self, signum: Optional[int] = None) -> None:
        """Stop taking notebooks and kill every kernel now (signal-handler safe)."""
        self.cancelled = True
        self.launcher.kill_all()
        child.kill_all()  # a mask or a coverage read in progress: no answer is waited for
        self._wake()

    def _wake(self) -> None:
        if self._arrived is not None:
            self._arrived.set()

    async def run(self) -> None:
        """Run until the queue is empty and closed, or cancelled; kernels and helpers cleaned up."""
        self._arrived = asyncio.Event()
        workers = [asyncio.ensure_future(self._worker()) for _ in range(self.workers)]
        try:
            await asyncio.gather(*workers)
        except BaseException:  # one worker failed (or this was cancelled): stop the others before going on
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            raise
        finally:
            for task in self._prepared.values():
                task.cancel()
            await self.pool.drain()
            self.launcher.close()

    async def _next(self) -> Optional[Job]:
        """The next job, waiting for one to be added; None when closed and empty, or cancelled."""
        while not self.queue and not self.closed and not self.cancelled:
            self._arrived.clear()
            await self._arrived.wait()
        return self.queue.popleft() if self.queue and not self.cancelled else None

    async def _worker(self) -> None:
        while True:
            job = await self._next()
            if job is None:
                return
            self._prefetch(itertools.islice(self.queue, PREFETCH_PER_WORKER * self.workers))
            await self._run_job(job)

    async def _run_job(self, job: Job) -> None:
        """Run one job and report it; whatever nbci raises while handling it is that job's error."""
        self.held[job.index] = job
        self.sink.started(job)
        try:
            result, nb = await self._run_with_retries(job)
            log = notebook_log(result, nb) if self.config.github else ""
        except Exception as exc:  # a bug in nbci, or a notebook it cannot handle: this notebook's error
            result, log = internal_error_result(job.path, exc), ""
        finally:
            self._prepared.pop(job.index, None)
        result.masked += self.masker.mask_result(result)  # what was added after the notebook's copy was masked
        log = self.masker.mask_text(log)[0]
        self.held.pop(job.index, None)
        self.sink.finished(job, result, log)

    def _prepare(self, job: Job) -> "asyncio.Future[Prepared]":
        """The job's notebook being read (once, off the event loop), then its kernel being started."""
        if job.index not in self._prepared:
            self._prepared[job.index] = asyncio.ensure_future(self._read(job))
        return self._prepared[job.index]

    async def _read(self, job: Job) -> Prepared:
        """The job prepared; an exception on the way is kept on it, to become the job's error."""
        prepared = Prepared(job)
        try:
            await self._read_into(prepared)
        except Exception as exc:
            prepared.failure = exc
        return prepared

    async def _read_into(self, prepared: Prepared) -> Prepared:
        config, job = self.config, prepared.job
        prepared.settings = settings_for(config.notebook_defaults, config.rules, job.path, config.parameters)
        needs = missing_env_reason(prepared.settings.requires_env, os.environ)
        if needs and not prepared.settings.skip:
            prepared.settings = replace(prepared.settings, skip=needs)
        if prepared.settings.skip:
            return prepared
        try:
            source = await asyncio.get_running_loop().run_in_executor(None, read_notebook, config.root, job.path)
            prepared.nb, prepared.warnings, prepared.text = source.nb, source.warnings, source.text
            if source.from_text:
                prepared.text_sources = [cell.get("source", "") for cell in source.nb.cells]
            prepared.injected_at = inject(prepared.nb, prepared.settings.parameters)
            if prepared.settings.check_outputs != "off":
                prepared.committed = committed_cells(prepared.nb.cells)
            cwd = kernel_cwd(config.root, job.path, prepared.settings.cwd)
        except InvalidNotebook as exc:  # unreadable, another language for parameters, or no cwd
            prepared.invalid = exc
            return prepared
        prepared.request = KernelRequest(kernel_name(prepared.nb, prepared.settings.kernel), cwd)
        installs = install_cells(prepared.nb)
        prepared.warnings += [install_warning(installs)] if installs else []
        if self.cache is not None and self.launcher.is_ipykernel(prepared.request.name) and not installs:
            await asyncio.get_running_loop().run_in_executor(None, self._look_up, prepared)
            if prepared.cached is not None:
                return prepared  # no kernel needed
        if not self.cancelled:
            self.pool.prefetch((job.index, 1), prepared.request)
        return prepared

    def _look_up(self, prepared: Prepared) -> None:
        """Set the job's cache key and fresh entry (off the event loop: it hashes files). A key that
        cannot be computed leaves the notebook to run, with a warning: when in doubt, run."""
        try:
            prepared.cache_key = self.cache.key(prepared.nb, prepared.job.path, prepared.request.name,
                                                asdict(prepared.settings))
            prepared.cached, warning = self.cache.lookup(prepared.cache_key)
        except Exception as exc:
            prepared.cache_key, prepared.cached = None, None
            warning = f"the execution cache could not be used for it ({describe(exc)}): ran it"
        prepared.warnings += [warning] if warning else []

    def _prefetch(self, upcoming: Iterable[Job]) -> None:
        for job in upcoming:
            self._prepare(job)

    async def _run_with_retries(self, job: Job) -> Tuple[NotebookResult, Optional[NotebookNode]]:
        """The job's result and executed copy: skipped, invalid, cached or run (with retries)."""
        prepared = await self._prepare(job)
        nb: Optional[NotebookNode] = None
        if prepared.failure is not None:
            raise prepared.failure
        if prepared.settings.skip:
            result = NotebookResult(job.path, st.SKIPPED, skip_reason=prepared.settings.skip)
        elif prepared.invalid is not None:
            result = invalid_result(job.path, prepared.invalid)
        elif prepared.cached is not None:
            result, nb = self._reuse(job, prepared.cached)
        else:
            result, nb = await self._attempts(prepared)
            result.warnings = prepared.warnings + result.warnings
            if result.status in (st.PASSED, st.CHANGED) and prepared.cache_key and self.cache is not None:
                await asyncio.get_running_loop().run_in_executor(None, self._keep, prepared, result, nb)
        if self.config.update_outputs and result.status in UPDATED_STATUSES:
            await asyncio.get_running_loop().run_in_executor(None, self._update_source, prepared, nb, result)
        if prepared.settings.parameters and not prepared.settings.skip:
            result.parameters = dict(prepared.settings.parameters)
        return result, nb

    def _measured(self, prepared: Prepared, result: NotebookResult) -> None:
        """Set the result's coverage from its final attempt's data file: complete, partial (the kernel was
        stopped before it saved) or missing, with a warning saying why when it is not complete."""
        watch, contributed = prepared.coverage, None
        if watch is None or result.status == st.STARTUP_FAILED:
            state, note = MISSING, "--coverage: no kernel ran it, so nothing was measured"
        elif watch.coverage_error is not None:
            state, note = MISSING, start_problem(watch.coverage_error, result.kernel or "")
        else:
            state, note = (COMPLETE, None) if watch.coverage_saved else (PARTIAL, (
                f"--coverage: its kernel stopped before saving ({result.status}): lines run in the cell that was "
                "running are not counted"))
            try:
                contributed = read_contribution(prepared.coverage_file, self.config.root)
            except (OSError, ValueError) as exc:
                state, note = MISSING, f"--coverage: its kernel's data could not be read ({describe(exc)}): not counted"
        result.coverage, result.coverage_data = summary_of(contributed, state, note), contributed
        result.warnings += [note] if note else []

    def _reuse(self, job: Job, entry: Entry) -> Tuple[NotebookResult, NotebookNode]:
        """The result a cache entry stands for, its executed copy written as a run would write it."""
        nb = nbformat.from_dict(entry.notebook)
        check = entry.result.get("output_check")
        output_check = OutputCheck.from_json(check) if isinstance(check, dict) else None
        result = NotebookResult(job.path, st.CHANGED if output_check and output_check.differences else st.CACHED,
                                kernel=entry.result.get("kernel"), peak_rss=entry.result.get("peak_rss"),
                                cached_from=entry.origin(), output_check=output_check)
        result.masked = int(entry.result.get("masked") or 0) + self._mask(nb, result)  # --mask-env may name more now
        if self.config.coverage_dir is not None:  # the measurement stored with the entry (its key says --coverage)
            result.coverage, result.coverage_data = entry.result.get("coverage"), entry.result.get("coverage_data")
        self._write_copy(job, nb, result)
        return result, nb

    def _keep(self, prepared: Prepared, result: NotebookResult, nb: NotebookNode) -> None:
        """Store a passed notebook in the execution cache when its reads were recorded."""
        if prepared.reads is None or prepared.cache_key is None or self.cache is None:
            return
        try:
            reads = self.cache.relative_reads(prepared.reads)
            self.masker.mask_notebook(reads or {})  # a path it looked for may be a secret (IPython's HTML())
            self.cache.store(prepared.cache_key, result.to_json(), nb, reads)
        except Exception as exc:  # a copy or result the cache cannot hold: the run goes on without it
            result.warnings.append(f"not kept in the execution cache: {getattr(exc, 'strerror', None) or describe(exc)}")

    def _update_source(self, prepared: Prepared, nb: NotebookNode, result: NotebookResult) -> None:
        """``--update-outputs``: write the fresh outputs into the notebook's ``.ipynb`` source, keeping the
        rest of the file as it was; a text notebook or a file that cannot be written gets a warning."""
        path = prepared.job.path
        if is_text_path(path):
            result.warnings.append("--update-outputs: a text notebook keeps no outputs; left as it is")
            return
        try:
            text = self._with_masks(updated_source, prepared, prepared.text, nb.cells, prepared.injected_at)
            if text is not None:
                write_source(self.config.root, path, prepared.text, text)
        except (OSError, ValueError, RecursionError, MasksTooSlow, MasksFailed) as exc:
            result.warnings.append(f"--update-outputs: could not write {path}: "
                                   f"{getattr(exc, 'strerror', None) or describe(exc)}")

    async def _attempts(self, prepared: Prepared) -> Tuple[NotebookResult, NotebookNode]:
        """Run until passed, or the failure is not transient, or ``--retries`` are used up."""
        attempt = 0
        while True:
            attempt += 1
            nb = copy.deepcopy(prepared.nb) if prepared.settings.retries else prepared.nb
            result = await self._attempt(prepared, nb, attempt)
            if result.ok or self.cancelled or attempt > prepared.settings.retries \
                    or not is_transient(result, self.config.retry_on):
                break
        if self.config.coverage_dir is not None:  # only the final attempt's measurement counts
            await asyncio.get_running_loop().run_in_executor(None, self._measured, prepared, result)
        if attempt > 1 and result.status == st.PASSED:
            result.status = st.FLAKY
        if result.error is not None:
            result.error.line = failure_line(prepared.text, result.error, prepared.text_sources, prepared.injected_at)
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
            monitor = asyncio.ensure_future(self._monitor(job, kernel, watch, prepared.settings.notebook_timeout))
            if self.config.coverage_dir is not None:
                prepared.coverage_file = data_file_for(self.config.coverage_dir)
            coverage = None if prepared.coverage_file is None else start_code(
                prepared.coverage_file, self.config.coverage_sources, self.config.root)
            try:
                status, error = await execute(nb, kernel, request.cwd, prepared.settings.timeout,
                                              prepared.settings.allow_errors, watch, lambda: self.cancelled,
                                              self.config.root if self.cache is not None else None,
                                              nbval=prepared.committed is not None or self.config.update_outputs,
                                              coverage=coverage)
                prepared.reads, prepared.coverage = watch.reads, watch
            finally:
                monitor.cancel()
                self.pool.release(kernel)
            result = NotebookResult(job.path, status, kernel=request.name, error=error, peak_rss=watch.peak_rss,
                                    kernel_output=kernel.output.text() if kernel.output else "",
                                    stopped_at=watch.stopped_at, warnings=list(watch.warnings),
                                    cells_run=watch.cells_run)
        result.duration = round(watch.elapsed, 3)
        result.attempts = attempt
        if prepared.committed is not None and result.status == st.PASSED:
            await asyncio.get_running_loop().run_in_executor(None, self._check, prepared, nb, result)
        result.masked = self._mask(nb, result)
        self._write_copy(job, nb, result)
        return result

    def _mask(self, nb: NotebookNode, result: NotebookResult) -> int:
        """Mask secret values in the executed copy and its result, before anything writes them."""
        return self.masker.mask_notebook(nb) + self.masker.mask_result(result)

    def _with_masks(self, function: Callable[..., Any], prepared: Prepared, before: Any, cells: Any, *more: Any) -> Any:
        """``function`` (``check_outputs`` or ``updated_source``) with the notebook's check options; it runs
        the repository's masks in a bounded child process itself (nbci.outputs.bounded)."""
        settings = prepared.settings
        masks = self.config.sanitize_masks + tuple(Mask(pattern, replace) for pattern, replace in settings.output_masks)
        options = CheckOptions(settings.check_outputs, settings.check_cells, masks, settings.default_masks,
                               settings.image_tolerance)
        return function(before, cells, options, *more)

    def _check(self, prepared: Prepared, nb: NotebookNode, result: NotebookResult) -> None:
        """Compare the fresh outputs with the committed ones: status ``changed`` when they differ, ``failed``
        when the settings file's masks take too long."""
        try:
            result.output_check = self._with_masks(check_outputs, prepared, prepared.committed, nb.cells)
        except (MasksTooSlow, MasksFailed) as exc:
            kind = "OutputMasksTooSlow" if isinstance(exc, MasksTooSlow) else "OutputMasksFailed"
            result.status, result.error = st.FAILED, CellError(kind, str(exc))
            return
        lines: Dict[int, Optional[int]] = {}
        for difference in result.output_check.differences:
            if difference.cell_index not in lines:
                lines[difference.cell_index] = failure_line(prepared.text, CellError("", "", difference.cell_index),
                                                            prepared.text_sources, prepared.injected_at)
            difference.line = lines[difference.cell_index]
        if result.output_check.differences:
            result.status = st.CHANGED

    def _write_copy(self, job: Job, nb: NotebookNode, result: NotebookResult) -> None:
        """Write the executed (or partial) copy and set ``result.output_path`` (relative to the root when
        inside). A copy that cannot be written fails a passed notebook; the run goes on either way."""
        nb.metadata["nbci"] = {"status": result.status, "duration": result.duration, "stopped_at": result.stopped_at,
                               "error": asdict(result.error) if result.error else None}
        in_place = self.config.inplace and not is_text_path(job.path)
        if in_place:
            target = Path(os.path.realpath(self.config.root / job.path))  # read from there: inside the root
            base = target.parent
        else:  # a text notebook's copy always goes to the output folder: its source stays text
            target, base = self.config.output_dir / copy_name(job.path, self.config.copy_names), self.config.output_dir
        try:
            if in_place and not inside(target, Path(os.path.realpath(self.config.root))):  # the notebook made a link
                raise ValueError("its name now leads outside the working directory (a link); not written")
            write_notebook(nb, target, base)
        except (OSError, ValueError, RecursionError) as exc:
            reason = f"could not write the executed copy {target}: {getattr(exc, 'strerror', None) or describe(exc)}"
            if result.ok:
                result.status, result.error = st.FAILED, CellError("OutputWriteError", reason)
            else:
                result.warnings.append(reason)
            return
        try:
            result.output_path = target.relative_to(self.config.root).as_posix()
        except ValueError:
            result.output_path = str(target)

    async def _monitor(self, job: Job, kernel: Kernel, watch: Watch, notebook_timeout: Optional[float]) -> None:
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
            if notebook_timeout and watch.elapsed > notebook_timeout and not watch.kill_reason:
                watch.kill_reason = (st.NOTEBOOK_TIMEOUT, "NotebookTimeout",
                                     f"the notebook ran longer than --notebook-timeout {notebook_timeout:g} s")
                kernel.kill_tree()
            if watch.elapsed >= next_beat:
                next_beat += config.heartbeat
                line = self.masker.mask_text(first_line(watch.cell_source))[0]
                self.sink.heartbeat(job.path, watch.cell_index, line, watch.elapsed, rss)
            await asyncio.sleep(SAMPLE_INTERVAL)


def internal_error_result(path: str, exc: BaseException) -> NotebookResult:
    """The result of a notebook nbci failed on: status ``error``, saying what nbci raised."""
    return NotebookResult(path, st.ERROR, error=CellError(INTERNAL_ERROR, (
        f"nbci failed while handling this notebook ({describe(exc)}); the other notebooks "
        "ran on. This is a bug in nbci: please report it with the notebook if you can")))


def kernel_cwd(root: Path, path: str, cwd: str) -> Path:
    """The folder a notebook's kernel starts in, by ``--cwd``/``cwd:``; ``InvalidNotebook`` when missing."""
    if cwd == "notebook":
        return (root / path).parent
    folder = root if cwd == "root" else root / cwd
    if not folder.is_dir() or not inside(folder.resolve(), root):
        raise InvalidNotebook(f"cwd {cwd} is not a folder inside the working directory: create it or change cwd")
    return folder


def execution_cache(config: Config) -> Optional[ExecutionCache]:
    """The run's execution cache, or None when it is off."""
    if not config.caching or config.cache_dir is None:
        return None
    options = {"timeout": config.timeout, "notebook_timeout": config.notebook_timeout,
               "allow_errors": config.allow_errors, "memory_limit": config.memory_limit,
               "default_masks": config.default_masks, "sanitize_masks": config.sanitize_masks}
    if config.coverage:  # a result kept with its measurement stands only for runs that measure the same
        options["coverage"] = config.coverage_sources.portable(config.root)
    return ExecutionCache(config.cache_dir, config.root, config.cache_max_age, list(config.cache_inputs), options)


def engine_cpu() -> float:
    """CPU seconds (user + system) this process has used, its threads included, its children not."""
    times = os.times()
    return times.user + times.system


def first_line(source: str) -> str:
    stripped = source.strip()
    return stripped.splitlines()[0] if stripped else ""
