"""One notebook through nbclient in one fresh kernel -> ``NotebookResult``.

The executed copy keeps whatever ran, also when a cell failed, timed out or the kernel died; the
error is recorded both in the result and as an error output on the cell where it happened.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError
from nbformat import NotebookNode

from nbci import results as st
from nbci.iopub import STREAM_CAP  # characters of stream output kept per cell in the executed copy
from nbci.kernels import Kernel, describe_exit
from nbci.results import CellError, NotebookResult

ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
DEFAULT_KERNEL = "python3"


class InvalidNotebook(Exception):
    """The file is not a notebook nbformat can read; the message is nbformat's reason."""


def strip_ansi(text: str) -> str:
    return ANSI.sub("", text)


def read_notebook(path: Path) -> NotebookNode:
    """Read and validate a notebook as nbformat v4; raise ``InvalidNotebook`` with the reason."""
    try:
        with open(path, encoding="utf-8") as handle:
            nb = nbformat.read(handle, as_version=4)
        nbformat.validate(nb)
    except nbformat.ValidationError as exc:
        raise InvalidNotebook(f"not a valid notebook: {exc.message}") from None
    except UnicodeDecodeError as exc:
        raise InvalidNotebook(f"not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    except Exception as exc:  # nbformat raises many kinds for broken JSON and structure
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InvalidNotebook(f"not a readable notebook: {reason}") from None
    return nb


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

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started


class NbciClient(NotebookClient):
    """nbclient with a bounded copy of stream output and the running cell exposed."""

    def __init__(self, nb: NotebookNode, watch: Watch, **kw: Any) -> None:
        super().__init__(nb, **kw)
        self.watch = watch
        self._stream_chars: Dict[int, int] = {}

    def output(self, outs: List[NotebookNode], msg: Dict[str, Any], display_id: Optional[str],
               cell_index: int) -> Optional[NotebookNode]:
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

    async def run_cells(self) -> None:
        """Execute every cell in order, like ``async_execute`` but on a kernel we already started."""
        self.reset_execution_trackers()
        info = await self.kc.kernel_info(reply=True, timeout=self.startup_timeout)
        if "language_info" in info["content"]:
            self.nb.metadata["language_info"] = info["content"]["language_info"]
        for index, cell in enumerate(self.nb.cells):
            self.watch.cell_index = index
            self.watch.cell_source = cell.source if cell.cell_type == "code" else ""
            await self.async_execute_cell(cell, index, execution_count=self.code_cells_executed + 1)
        self.watch.cell_index = None
        self.set_widgets_metadata()


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
) -> Tuple[str, Optional[CellError]]:
    """Run ``nb`` (mutated in place) on ``kernel``; return its status and error, if any."""
    client = NbciClient(
        nb, watch, km=kernel.manager, timeout=math.ceil(timeout) if timeout else None,
        allow_errors=allow_errors, resources={"metadata": {"path": str(cwd)}},
    )
    client.kc = kernel.client
    try:
        await client.run_cells()
    except CellExecutionError as exc:
        return st.FAILED, cell_error(nb, watch.cell_index, exc.ename, exc.evalue)
    except CellTimeoutError:
        message = f"cell {watch.cell_index} ran longer than --timeout {timeout:g} s"
        mark_cell(nb, watch.cell_index, "CellTimeoutError", message)
        return st.TIMEOUT, CellError("CellTimeoutError", message, watch.cell_index)
    except (DeadKernelError, RuntimeError, TimeoutError, asyncio.TimeoutError) as exc:
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


def write_notebook(nb: NotebookNode, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".nbci-tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        nbformat.write(nb, handle)
    tmp.replace(path)


def invalid_result(path: str, reason: str) -> NotebookResult:
    return NotebookResult(path=path, status=st.INVALID, error=CellError("InvalidNotebook", reason))
