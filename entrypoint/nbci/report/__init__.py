"""Reporters: one per audience (terminal, GitHub, files), all fed the same events."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:  # pragma: no cover
    from nbformat import NotebookNode

    from nbci.config import Config
    from nbci.results import NotebookResult, RunResult

try:
    from typing import Protocol
except ImportError:  # pragma: no cover - Python < 3.8 is not supported anyway
    Protocol = object  # type: ignore


class Reporter(Protocol):
    """What the scheduler tells every reporter, in this order per notebook."""

    def notebook_started(self, path: str) -> None: ...

    def heartbeat(self, path: str, cell_index: Optional[int], source_line: str, elapsed: float,
                  rss: Optional[int]) -> None: ...

    def notebook_finished(self, result: "NotebookResult", notebook: Optional["NotebookNode"]) -> None: ...

    def run_finished(self, run: "RunResult", config: "Config") -> None: ...


def failing_source(result: "NotebookResult", notebook: Optional["NotebookNode"]) -> Optional[str]:
    """The source of the cell the error names, when the executed copy has it."""
    index = result.error.cell_index if result.error else None
    if notebook is None or index is None or index >= len(notebook.cells):
        return None
    return notebook.cells[index].source


def tail(lines: list, limit: int) -> list:
    """The last ``limit`` lines, with a marker saying how many were cut."""
    if len(lines) <= limit:
        return list(lines)
    return [f"... {len(lines) - limit} earlier lines cut ..."] + list(lines[-limit:])


def format_bytes(size: Optional[int]) -> str:
    return "-" if size is None else f"{size / 2**20:.0f} MiB"
