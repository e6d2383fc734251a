"""Reporters: one per audience (terminal, GitHub, files), all fed the same events."""

from __future__ import annotations

import datetime
import difflib
import re
from typing import TYPE_CHECKING, List, Optional

from nbci.text import clip

if TYPE_CHECKING:  # pragma: no cover
    from nbci.config import Config
    from nbci.results import NotebookResult, OutputDifference, RunResult

LONE_SURROGATE = re.compile("[\ud800-\udfff]")  # how Python holds a file name's bytes that are not UTF-8
DIFF_INPUT_LINES = 2000  # of each side, before diffing (difflib's time grows with the lines it compares)
DIFF_CONTEXT = 2  # unchanged lines shown around each change
KIND_TEXT = {"changed": "changed", "missing": "missing (committed, not produced now)",
             "extra": "new (not in the committed notebook)"}


class Reporter:
    """What the scheduler tells every reporter: the run starting, then per notebook, then the end.
    Each event does nothing unless a reporter overrides it."""

    def run_started(self, paths: "List[str]", config: "Config") -> None:
        pass

    def notebook_started(self, path: str) -> None:
        pass

    def heartbeat(self, path: str, cell_index: Optional[int], source_line: str, elapsed: float,
                  rss: Optional[int]) -> None:
        pass

    def notebook_finished(self, result: "NotebookResult", log: str) -> None:
        """``log``: the notebook's streamed output and tracebacks for the job log (GitHub mode only, else empty)."""

    def run_finished(self, run: "RunResult", config: "Config") -> None:
        pass


def printable(text: str) -> str:
    """``text`` with each lone surrogate (a byte of a file name that is not UTF-8) shown as U+FFFD."""
    return LONE_SURROGATE.sub("\ufffd", text)


def problems_headline(run: "RunResult") -> str:
    """``nbci failed: 2 internal problems``: what every reporter leads with when ``run.problems`` is not empty."""
    count = len(run.problems)
    return f"nbci failed: {count} internal problem{'' if count == 1 else 's'}"


def failing_source(result: "NotebookResult") -> Optional[str]:
    """The source of the cell the error names, when known."""
    return result.error.source if result.error else None


def tail(lines: list, limit: int) -> list:
    """The last ``limit`` lines, with a marker saying how many were cut."""
    if len(lines) <= limit:
        return list(lines)
    return [f"... {len(lines) - limit} earlier lines cut ..."] + list(lines[-limit:])


def not_run_note(result: "NotebookResult") -> str:
    """Why a notebook has no run of its own here: a skip's reason, a cached note; else empty."""
    if result.skip_reason:
        return result.skip_reason
    return cached_note(result)


def masked_note(result: "NotebookResult") -> str:
    """``2 secret values masked`` when nbci replaced any by ``***`` (nbci.masking); empty otherwise."""
    count = result.masked
    return f"{count} secret value{'' if count == 1 else 's'} masked" if count else ""


def cached_note(result: "NotebookResult") -> str:
    """``ran 2 h ago at 1a2b3c4`` for a cached result; empty otherwise."""
    origin = result.cached_from
    if not origin:
        return ""
    try:
        ran = datetime.datetime.fromisoformat(origin["ran_at"])
        seconds = (datetime.datetime.now(datetime.timezone.utc) - ran).total_seconds()
    except (KeyError, TypeError, ValueError):
        return "ran earlier"
    ago = next(f"{seconds / size:.0f} {unit}" for size, unit in ((86400, "d"), (3600, "h"), (60, "min"), (1, "s"))
               if seconds >= size or unit == "s")
    where = f" at {str(origin['commit'])[:7]}" if origin.get("commit") else ""
    run = f" (run {origin['run_id']})" if origin.get("run_id") else ""
    return f"ran {ago} ago{where}{run}"


def format_bytes(size: Optional[int]) -> str:
    return "-" if size is None else f"{size / 2**20:.0f} MiB"


def changes(result: "NotebookResult") -> "List[OutputDifference]":
    """The outputs of ``result`` that differ from the committed notebook (empty unless checked and changed)."""
    return list(result.output_check.differences) if result.output_check else []


def changed_cells(result: "NotebookResult") -> int:
    """How many cells of ``result`` have an output that differs from the committed notebook."""
    return len({difference.cell_index for difference in changes(result)})


def changed_count(count: int) -> str:
    """``1 changed its outputs``, ``2 changed their outputs``."""
    return f"{count} changed {'its' if count == 1 else 'their'} outputs"


def changed_note(result: "NotebookResult") -> str:
    """``outputs changed in 2 cells (of 5 compared), first cell 3 (code cell 2)``; empty when none changed."""
    found = changes(result)
    if not found:
        return ""
    count = changed_cells(result)
    compared = f" (of {result.output_check.compared} compared)" if result.output_check.compared else ""
    return f"outputs changed in {count} cell{'' if count == 1 else 's'}{compared}, first {found[0].cell}"


def difference_title(difference: "OutputDifference") -> str:
    """``cell 3 (code cell 2): stdout changed``: which output of which cell, and how it differs."""
    return f"{difference.cell}: {change_text(difference)}"


def change_text(difference: "OutputDifference") -> str:
    """``stdout changed``, ``image/png missing (committed, not produced now)``: how one output differs."""
    return f"{difference.output} {KIND_TEXT.get(difference.kind, difference.kind)}"


def diff_lines(difference: "OutputDifference", limit: int, chars: int) -> List[str]:
    """A unified diff of the committed (``-``) and fresh (``+``) text of ``difference``, without file
    headers: at most ``limit`` lines of at most ``chars`` characters, a marker for the rest; empty
    when there is no text to compare (an image). No line holds a line break."""
    before = difference.expected.splitlines()[:DIFF_INPUT_LINES]
    after = difference.actual.splitlines()[:DIFF_INPUT_LINES]
    lines = list(difflib.unified_diff(before, after, lineterm="", n=DIFF_CONTEXT))[2:]
    shown = [clip(line, chars) for line in lines[:limit]]
    return shown + ([f"... {len(lines) - limit} more diff lines cut ..."] if len(lines) > limit else [])
