"""One notebook through nbclient in one fresh kernel -> ``NotebookResult``.

The executed copy keeps whatever ran, also when a cell failed, timed out or the kernel died; the
error is recorded both in the result and as an error output on the cell where it happened. Frozen
cells (``run_control.frozen``, the freeze extension's mark, which jupytext keeps) are not run, as in
Jupyter, and are marked not run in the copy.
"""

from __future__ import annotations

import ast
import asyncio
import json
import math
from warnings import catch_warnings, simplefilter
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionComplete, CellExecutionError, CellTimeoutError, DeadKernelError
from nbformat import NotebookNode

from nbci import results as st
from nbci.cache import recorder_code
from nbci.code_coverage import FINISH_EXPRESSION
from nbci.errors import InvalidNotebook, NotANotebook
from nbci.files import UnsafePath, ensure_folder, read_notebook_bytes, write_atomic
from nbci.iopub import RESET_KEY, STREAM_CAP  # STREAM_CAP: characters of stream output kept per cell
from nbci.kernels import Kernel, describe_exit
from nbci.locate import json_error_line
from nbci.outputs import Markers, cell_markers, tags_of
from nbci.recorder import REPORT_EXPRESSION
from nbci.results import MESSAGE_CHARS, CellError, NotebookResult
from nbci.text import clip, escape_surrogates
from nbci.text_notebooks import is_text_path, read_text_notebook

ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
UNREADABLE_OUTPUT = "UnreadableOutput"  # the ename of a cell whose output nbci could not read
MAX_LEFT_OUT_WARNINGS = 10  # warnings about outputs left out, per notebook; the rest are counted
NOTEBOOK_OUTPUT_CAP = 100 * 2**20  # characters of output kept per notebook, nbci's limit for a notebook's size
DEFAULT_KERNEL = "python3"
FINISH_SECONDS = 20  # for a kernel to stop and save its --coverage measurement, retries included
FINISH_TRIES = 3  # requests to stop and save, while the kernel aborts them after an interrupted cell


class NotebookExit(Exception):
    """A cell raised ``SystemExit`` or called ``exit()``; ``code`` as the notebook gave it."""

    def __init__(self, cell_index: int, code: str) -> None:
        super().__init__(code)
        self.cell_index = cell_index
        self.code = code

    @property
    def clean(self) -> bool:
        """Exit code 0 or none: the notebook ended early on purpose (papermill's rule)."""
        return self.code.strip() in ("", "0", "None")


def describe(exc: BaseException) -> str:
    """``Type: first line of the message``, at most 200 characters: an exception in one line."""
    lines = str(exc).strip().splitlines()
    return clip(f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__, 200)


def strip_ansi(text: str) -> str:
    return ANSI.sub("", text)


@dataclass
class SourceNotebook:
    """A notebook as read from its file: the notebook, what was repaired, and the file's text."""

    nb: NotebookNode
    warnings: List[str]
    text: str
    from_text: bool = False  # a text notebook, read with jupytext


def read_notebook(root: Path, relpath: str) -> SourceNotebook:
    """Read a notebook as Jupyter does: v4, what nbformat repairs repaired (a warning per repair);
    text notebooks through jupytext. Raise ``InvalidNotebook`` only for what cannot be read or run."""
    try:
        text = read_notebook_bytes(root, relpath).decode("utf-8")
    except UnsafePath as exc:
        raise InvalidNotebook(str(exc)) from None
    except UnicodeDecodeError as exc:
        raise InvalidNotebook(f"not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    if is_text_path(relpath):
        nb = read_text_notebook(text, Path(relpath).suffix)
        repair(nb)  # ids and the like, which text formats do not keep: nothing to warn about
        return SourceNotebook(nb, [], text, from_text=True)
    try:
        # nbformat.reads without its own validation, which logs every problem repair() handles
        nb = nbformat.convert(nbformat.reader.reads(text), 4)
    except Exception as exc:  # nbformat raises many kinds for broken JSON and structure (RecursionError too)
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InvalidNotebook(reason, line=json_error_line(text)) from None
    try:
        return SourceNotebook(nb, repair(nb), text)
    except InvalidNotebook:
        raise
    except Exception as exc:  # a structure nbformat's own tools trip over
        raise InvalidNotebook(f"{type(exc).__name__} while reading its structure") from None


def repair(nb: NotebookNode) -> List[str]:
    """Make ``nb`` valid the way Jupyter's own tools do (in place); return what was changed or is
    still off. Raise ``InvalidNotebook`` when its cells cannot be run at all."""
    warnings: List[str] = []
    minor = nb.get("nbformat_minor")
    if isinstance(minor, int) and minor < 5 and any(isinstance(c, dict) and "id" in c for c in nb.get("cells", [])):
        nb.nbformat_minor = 5  # ids appeared in 4.5; Jupyter reads them in any 4.x
        warnings.append("its cells have ids, which nbformat 4.4 and older do not allow: read as nbformat 4.5")
    try:
        changes, repaired = nbformat.validator.normalize(nb)  # missing or duplicate cell ids, and the like
    except Exception:  # nbformat < 5.7 has no normalize; odd structures make it raise
        changes, repaired = 0, nb
    if changes:
        nb.clear()
        nb.update(nbformat.from_dict(repaired))
        warnings.append(f"nbformat repaired {changes} problem(s) in it (missing or duplicate cell ids, ...)")
    try:
        with catch_warnings():
            simplefilter("ignore")
            nbformat.validate(nb)
    except nbformat.ValidationError as exc:
        check_runnable(nb)
        warnings.append(f"not valid nbformat ({exc.message}): run anyway, as Jupyter opens it")
    except Exception as exc:  # the validator itself fails on some structures (an id that is a list)
        raise InvalidNotebook(f"nbformat cannot validate it ({type(exc).__name__})") from None
    return warnings


def check_runnable(nb: NotebookNode) -> None:
    """Raise ``InvalidNotebook`` unless the structure nbci and nbclient rely on is there: a metadata
    mapping (a kernelspec, when given, with a name), and cells of a known type with a text source."""
    metadata, cells = nb.get("metadata"), nb.get("cells")
    kernelspec = metadata.get("kernelspec", {}) if isinstance(metadata, dict) else None
    if not isinstance(kernelspec, dict) or not isinstance(kernelspec.get("name", ""), str):
        raise InvalidNotebook("its metadata or kernelspec is not a mapping with a name")
    if not isinstance(cells, list):
        raise InvalidNotebook("it has no list of cells")
    for index, cell in enumerate(cells):
        if not isinstance(cell, dict) or cell.get("cell_type") not in ("code", "markdown", "raw") \
                or not isinstance(cell.get("source"), str) or not isinstance(cell.get("metadata", {}), dict):
            raise InvalidNotebook(f"cell {index} has no known cell_type, text source "
                                  "or metadata mapping")
        tags = cell.get("metadata", {}).get("tags", [])
        if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
            raise InvalidNotebook(f"cell {index}'s metadata.tags is not a list of texts: "
                                  "make it one, e.g. [\"parameters\"]")
        cell.setdefault("metadata", {})


def clear_outputs(nb: NotebookNode) -> None:
    """Remove every code cell's outputs, count and timing, so the copy shows only what this run did."""
    for cell in nb.cells:
        if cell.get("cell_type") == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
            cell.setdefault("metadata", {}).pop("execution", None)


def mark_not_run(nb: NotebookNode, after: Optional[int]) -> None:
    """Mark the code cells after index ``after`` (all, when None) as not run in the executed copy."""
    for index, cell in enumerate(nb.cells):
        if cell.get("cell_type") == "code" and (after is None or index > after):
            cell.setdefault("metadata", {})["nbci"] = {"not_run": True}


def is_frozen(cell: NotebookNode) -> bool:
    """Whether Jupyter leaves ``cell`` unrun: a code cell whose ``metadata.run_control.frozen`` is true."""
    run_control = cell.get("metadata", {}).get("run_control")
    return cell.get("cell_type") == "code" and isinstance(run_control, dict) and run_control.get("frozen") is True


def kernel_name(nb: NotebookNode, override: Optional[str]) -> str:
    """The kernel to use: the override, else the notebook's kernelspec, else python3."""
    return override or nb.metadata.get("kernelspec", {}).get("name") or DEFAULT_KERNEL


@dataclass
class Watch:
    """Live state of a running notebook, shared with the monitor that samples and enforces limits."""

    started: float = field(default_factory=time.monotonic)
    cell_index: Optional[int] = None
    cell_source: str = ""
    peak_rss: Optional[int] = None
    kill_reason: Optional[Tuple[str, str, str]] = None  # (status, ename, message) when nbci killed the kernel
    stopped_at: Optional[int] = None  # the cell whose clean SystemExit ended the notebook
    reads: Optional[Dict[str, Any]] = None  # what the kernel looked at (nbci.recorder), for the execution cache
    warnings: List[str] = field(default_factory=list)  # what was left out of the executed copy, one line each
    cells_run: int = 0  # code cells sent to the kernel (empty and frozen ones are not)
    coverage_error: Optional[Dict[str, Any]] = None  # the reply's content when --coverage could not start
    coverage_saved: bool = False  # --coverage: the kernel stopped and saved its measurement

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started


class NbciClient(NotebookClient):
    """nbclient with a bounded copy of stream output and the running cell exposed."""

    def __init__(self, nb: NotebookNode, watch: Watch, record_reads: Optional[Path] = None, nbval: bool = False,
                 coverage: Optional[str] = None, **kw: Any) -> None:
        super().__init__(nb, **kw)
        self.watch = watch
        self.coverage = coverage  # the silent request that starts --coverage measurement
        self.record_reads = record_reads  # record the files read below this folder (the execution cache)
        self.nbval = nbval  # honour nbval's NBVAL_SKIP and NBVAL_RAISES_EXCEPTION markers (--check-outputs)
        self.left_out = 0  # messages left out of the executed copy (the first few get a warning each)
        self._kept_chars = 0  # characters of output kept in the executed copy so far, all cells
        self._stream_chars: Dict[int, int] = {}
        self._reset_cells: Set[int] = set()  # cells warned about a dropped output connection

    def output(self, outs: List[NotebookNode], msg: Dict[str, Any], display_id: Optional[str],
               cell_index: int) -> Optional[NotebookNode]:
        if msg.get(RESET_KEY) is True and cell_index not in self._reset_cells:
            self._reset_cells.add(cell_index)  # one warning per cell, however many resets
            self.watch.warnings.append(f"cell {cell_index + 1}: {msg['content']['text'].strip()}")
        remaining = NOTEBOOK_OUTPUT_CAP - self._kept_chars
        size = output_size(msg.get("content", {}))
        self._kept_chars += size
        if size > remaining:
            if remaining < 0:
                return None
            self.watch.warnings.append(f"outputs past {NOTEBOOK_OUTPUT_CAP // 2**20} MiB in this notebook were "
                                       "left out of the executed copy")
            marker = f"\n[nbci: outputs past {NOTEBOOK_OUTPUT_CAP // 2**20} MiB in this notebook are not kept]\n"
            if msg["msg_type"] != "stream":
                outs.append(nbformat.v4.new_output("stream", name="stderr", text=marker.lstrip()))
                return None
            text = msg["content"].get("text", "")
            msg = {**msg, "content": {**msg["content"], "text": text[:remaining] + marker}}
        if msg["msg_type"] == "stream":
            used = self._stream_chars.get(cell_index, 0)
            if used > STREAM_CAP:
                return None
            text = msg["content"].get("text", "")
            self._stream_chars[cell_index] = used + len(text)
            if used + len(text) > STREAM_CAP:
                marker = f"\n[nbci: stream output truncated after {STREAM_CAP // 2**20} MiB in this cell]\n"
                msg = {**msg, "content": {**msg["content"], "text": text[: STREAM_CAP - used] + marker}}
        return super().output(outs, msg, display_id, cell_index)

    def process_message(self, msg: Dict[str, Any], cell: NotebookNode, cell_index: int) -> Optional[NotebookNode]:
        """nbclient's handling, except that a message Jupyter's format cannot hold (a MIME value that is
        not text, nesting past the stack) leaves a marker in the cell and a warning, not an exception."""
        try:
            return super().process_message(msg, cell, cell_index)
        except CellExecutionComplete:
            raise
        except Exception as exc:
            note = f"left out a {msg.get('msg_type')} message that nbci cannot store ({describe(exc)})"
            self.left_out += 1
            if self.left_out <= MAX_LEFT_OUT_WARNINGS:
                self.watch.warnings.append(f"cell {cell_index + 1}: {note}")
            marker = nbformat.v4.new_output("stream", name="stderr", text=f"[nbci: {note}]\n")
            cell.setdefault("outputs", []).append(marker)
            return marker

    async def async_execute_cell(self, cell: NotebookNode, cell_index: int, execution_count: Optional[int] = None,
                                 store_history: bool = True) -> NotebookNode:
        """nbclient's, except that with ``nbval`` a cell marked NBVAL_SKIP is not run and one marked
        NBVAL_RAISES_EXCEPTION may raise (as if tagged ``raises-exception``, a tag left as it was)."""
        markers = cell_markers(cell) if self.nbval and cell.get("cell_type") == "code" else Markers()
        if markers.skip:
            return cell
        if not markers.raises or "raises-exception" in tags_of(cell):
            return await super().async_execute_cell(cell, cell_index, execution_count, store_history)
        metadata = cell.setdefault("metadata", {})
        had_tags, tags = "tags" in metadata, metadata.get("tags")
        metadata["tags"] = tags_of(cell) + ["raises-exception"]
        try:
            return await super().async_execute_cell(cell, cell_index, execution_count, store_history)
        finally:
            if had_tags:
                metadata["tags"] = tags
            else:
                metadata.pop("tags", None)

    async def _check_raise_for_error(self, cell: NotebookNode, cell_index: int, exec_reply: Optional[Dict]) -> None:
        """A ``SystemExit`` (or IPython's ``exit()``) ends the notebook, whatever ``allow_errors`` says."""
        content = (exec_reply or {}).get("content", {})
        if content.get("status") == "error" and content.get("ename") == "SystemExit":
            raise NotebookExit(cell_index, content.get("evalue", ""))
        if any(isinstance(p, dict) and p.get("source") == "ask_exit" for p in content.get("payload", [])):
            raise NotebookExit(cell_index, "")
        await super()._check_raise_for_error(cell, cell_index, exec_reply)

    async def run_cells(self) -> None:
        """Execute every cell in order, like ``async_execute`` but on a kernel we already started."""
        self.reset_execution_trackers()
        info = await self.kc.kernel_info(reply=True, timeout=self.startup_timeout)
        if "language_info" in info["content"]:
            self.nb.metadata["language_info"] = info["content"]["language_info"]
        if self.coverage is not None:
            content = await self.silent(self.coverage)
            self.watch.coverage_error = None if content.get("status") == "ok" else content
        if self.record_reads is not None:
            await self.silent(recorder_code(self.record_reads))
        for index, cell in enumerate(self.nb.cells):
            if is_frozen(cell):
                cell.metadata["nbci"] = {"not_run": True, "frozen": True}
                continue
            self.watch.cell_index = index
            self.watch.cell_source = cell.source if cell.cell_type == "code" else ""
            await self.async_execute_cell(cell, index, execution_count=self.code_cells_executed + 1)
        self.watch.cell_index = None
        if self.left_out > MAX_LEFT_OUT_WARNINGS:
            self.watch.warnings.append(f"left out {self.left_out - MAX_LEFT_OUT_WARNINGS} more messages that nbci "
                                       "cannot store")
        self.set_widgets_metadata()
        if self.record_reads is not None:
            self.watch.reads = await self.recorded_reads()

    async def silent(self, code: str, expressions: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
        """Run ``code`` unseen: no execution count, no history, no output in any cell; its reply's content."""
        msg_id = self.kc.execute(code, silent=True, store_history=False, user_expressions=expressions or {},
                                 allow_stdin=False)
        reply = await self.async_wait_for_reply(msg_id)
        return (reply or {}).get("content", {})

    async def recorded_reads(self) -> Optional[Dict[str, Any]]:
        """What the kernel looked at, as ``nbci.recorder`` kept it; None when it cannot be told (the
        notebook broke or imitated the recorder): then the result is not cached."""
        content = await self.silent("", {"reads": REPORT_EXPRESSION})
        value = content.get("user_expressions", {}).get("reads", {})
        try:
            reports = ast.literal_eval(value["data"]["text/plain"])
            report = json.loads(reports[0]) if isinstance(reports, list) and len(reports) == 1 else None
        except (KeyError, ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            return None
        return report if isinstance(report, dict) else None

    async def finish_coverage(self, kernel: Kernel, interrupt: bool) -> None:
        """Stop and save the kernel's measurement (interrupting a cell that timed out first), within
        ``FINISH_SECONDS`` in all; ``watch.coverage_saved`` says whether it was."""
        if self.coverage is None or self.watch.coverage_error is not None:
            return
        try:
            self.watch.coverage_saved = await asyncio.wait_for(self._save_coverage(kernel, interrupt), FINISH_SECONDS)
        except Exception:  # a kernel that died or hangs keeps what its finished cells stored
            self.watch.coverage_saved = False

    async def _save_coverage(self, kernel: Kernel, interrupt: bool) -> bool:
        if interrupt:  # the cell's error aborts what was queued behind it: ask again
            await kernel.manager.interrupt_kernel()
        for _ in range(FINISH_TRIES):
            content = await self.silent("", {"saved": FINISH_EXPRESSION})
            if content.get("status") != "aborted":
                break
        saved = content.get("user_expressions", {}).get("saved", {})
        return saved.get("data", {}).get("text/plain") == "['saved']"


def output_size(content: Any) -> int:
    """About how many characters an output message adds to the copy: its text, and its data's texts."""
    if not isinstance(content, dict):
        return 0
    data = content.get("data")
    texts = [content.get("text"), *(data.values() if isinstance(data, dict) else [])]
    return sum(text_size(text) for text in texts)


def text_size(value: Any) -> int:
    """The characters of a text, or of a list of texts (nbformat's multiline strings); 0 otherwise."""
    if isinstance(value, str):
        return len(value)
    return sum(len(line) for line in value if isinstance(line, str)) if isinstance(value, list) else 0


def error_output(ename: str, evalue: str) -> NotebookNode:
    return nbformat.v4.new_output("error", ename=ename, evalue=evalue, traceback=[f"{ename}: {evalue}"])


def cell_error(nb: NotebookNode, index: Optional[int], ename: str, evalue: str) -> CellError:
    """The error as the failing cell's error output shows it, ANSI codes removed."""
    traceback: List[str] = []
    if index is not None and index < len(nb.cells):
        for out in reversed(nb.cells[index].get("outputs", [])):
            if out.get("output_type") == "error":
                ename, evalue = out.get("ename", ename), out.get("evalue", evalue)
                traceback = [strip_ansi(line) for line in out.get("traceback", [])]
                break
    return CellError(ename=ename, evalue=strip_ansi(evalue), cell_index=index, traceback=traceback)


def mark_cell(nb: NotebookNode, index: Optional[int], ename: str, evalue: str) -> None:
    """Leave the error on the cell where it happened, so the executed copy explains itself."""
    if index is not None and index < len(nb.cells) and nb.cells[index].cell_type == "code":
        nb.cells[index].outputs.append(error_output(ename, evalue))


async def execute(
    nb: NotebookNode,
    kernel: Kernel,
    cwd: Path,
    timeout: Optional[float],
    allow_errors: bool,
    watch: Watch,
    is_cancelled: Callable[[], bool],
    record_reads: Optional[Path] = None,
    nbval: bool = False,
    coverage: Optional[str] = None,
) -> Tuple[str, Optional[CellError]]:
    """Run ``nb`` (mutated in place) on ``kernel``; return its status and error, if any. With
    ``record_reads``, ``watch.reads`` gets the files the kernel read below that folder; with ``nbval``,
    nbval's markers say which cells are skipped or may raise; with ``coverage`` (``code_coverage.start_code``)
    the kernel measures the code it runs."""
    client = NbciClient(
        nb, watch, record_reads, nbval, coverage, km=kernel.manager, timeout=math.ceil(timeout) if timeout else None,
        allow_errors=allow_errors, resources={"metadata": {"path": str(cwd)}},
    )
    client.kc = kernel.client
    clear_outputs(nb)
    status, error = await run_notebook(client, nb, kernel, timeout, watch, is_cancelled)
    if status not in (st.CRASHED, st.NOTEBOOK_TIMEOUT, st.CANCELLED) and kernel.returncode() is None:
        await client.finish_coverage(kernel, interrupt=status == st.TIMEOUT)
    watch.cells_run = client.code_cells_executed
    if error is not None and error.cell_index is not None:
        error.code_cell = code_cell_number(nb, error.cell_index)
        if error.code_cell:
            error.source = clip(nb.cells[error.cell_index].get("source", ""), MESSAGE_CHARS)
    return status, error


def code_cell_number(nb: NotebookNode, index: int) -> Optional[int]:
    """The 1-based position of cell ``index`` among the code cells, or None for another kind."""
    if index >= len(nb.cells) or nb.cells[index].get("cell_type") != "code":
        return None
    return sum(1 for cell in nb.cells[:index + 1] if cell.get("cell_type") == "code")


async def run_notebook(client: "NbciClient", nb: NotebookNode, kernel: Kernel, timeout: Optional[float], watch: Watch,
                       is_cancelled: Callable[[], bool]) -> Tuple[str, Optional[CellError]]:
    """Run every cell; map how it ended to a status and the error, marking the cells not run."""
    try:
        await client.run_cells()
    except NotebookExit as exc:
        mark_not_run(nb, exc.cell_index)
        if exc.clean:
            watch.stopped_at = exc.cell_index
            return st.PASSED, None
        error = cell_error(nb, exc.cell_index, "SystemExit", exc.code)
        error.evalue = f"the notebook exited with code {exc.code!r} (sys.exit): only 0 or no code ends it early and passes"
        return st.FAILED, error
    except CellExecutionError as exc:
        mark_not_run(nb, watch.cell_index)
        return st.FAILED, cell_error(nb, watch.cell_index, exc.ename, exc.evalue)
    except CellTimeoutError:
        mark_not_run(nb, watch.cell_index)
        message = f"the cell ran longer than --timeout {timeout:g} s"
        mark_cell(nb, watch.cell_index, "CellTimeoutError", message)
        return st.TIMEOUT, CellError("CellTimeoutError", message, watch.cell_index)
    except RecursionError as exc:  # a message nested past the stack, read before nbclient handles it
        mark_not_run(nb, watch.cell_index)
        message = f"nbci could not read an output of this cell ({describe(exc)}); the kernel was still running"
        mark_cell(nb, watch.cell_index, UNREADABLE_OUTPUT, message)
        return st.ERROR, CellError(UNREADABLE_OUTPUT, message, watch.cell_index)
    except (DeadKernelError, RuntimeError, TimeoutError, asyncio.TimeoutError) as exc:
        mark_not_run(nb, watch.cell_index)
        if is_cancelled():
            status, ename, message = st.CANCELLED, "Cancelled", "the run was cancelled while this notebook ran"
        elif watch.kill_reason:
            status, ename, message = watch.kill_reason
        else:
            status, ename = st.CRASHED, "KernelDied"
            message = describe_exit(await wait_exit(kernel)) if isinstance(exc, DeadKernelError) else str(exc)
        mark_cell(nb, watch.cell_index, ename, message)
        return status, CellError(ename, message, watch.cell_index)
    return st.PASSED, None


async def wait_exit(kernel: Kernel, within: float = 2.0) -> Optional[int]:
    """The dead kernel's exit status, giving the OS a moment to reap it."""
    deadline = time.monotonic() + within
    while kernel.returncode() is None and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return kernel.returncode()


def write_notebook(nb: NotebookNode, path: Path, base: Path) -> None:
    """Write ``nb`` to ``path`` atomically, creating the folders from ``base`` without following links."""
    ensure_folder(path.parent, base)
    # as nbformat.writes, without validating again what was read valid; lone surrogates kept as escapes
    write_atomic(path, escape_surrogates(nbformat.v4.writes(nb)))


def invalid_result(path: str, exc: InvalidNotebook) -> NotebookResult:
    """The result of a notebook nbci could not read: ``invalid`` with the reason and line, or
    ``skipped`` for a named text file that is no notebook at all."""
    if isinstance(exc, NotANotebook):
        return NotebookResult(path=path, status=st.SKIPPED, skip_reason=str(exc))
    return NotebookResult(path=path, status=st.INVALID, error=CellError("InvalidNotebook", str(exc), line=exc.line))
