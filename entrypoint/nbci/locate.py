"""Where a failure is in the notebook's own file: the line to annotate, for ``error.line``.

A ``.ipynb`` is JSON: the line is the JSON line holding the failing source line. A text notebook
(jupytext) keeps code as it is: the line is the failing line itself.
"""

from __future__ import annotations

import bisect
import json
import re
from json.decoder import scanstring  # type: ignore[attr-defined]
from typing import Iterator, List, Optional, Tuple

from nbci.results import CellError

CELL_LINE = re.compile(r"Cell In\s*\[\d*\],\s*line (\d+)")
ARROW_LINE = re.compile(r"^-*>\s*(\d+)\b", re.MULTILINE)
ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")



def failure_line(text: str, error: CellError, text_sources: Optional[List[str]] = None,
                 injected_at: Optional[int] = None) -> Optional[int]:
    """The 1-based line of the source file ``text`` where ``error`` happened, or None when unknown.

    For a cell error in a ``.ipynb`` it is the JSON line holding the failing source line (from the
    traceback's ``Cell In[n], line L``), else the line where the cell's source begins; in a text
    notebook (``text_sources``: its cells' sources as jupytext read them) the line itself.
    ``injected_at``: the index of an injected parameters cell, which the file does not have.
    """
    if error.cell_index is None:
        return None
    index = error.cell_index
    if injected_at is not None:
        if index == injected_at:
            return None
        index -= index > injected_at
    cell_line = failing_cell_line(error.traceback)
    if text_sources is not None:
        starts = text_cell_starts(text, text_sources)
        start = starts[index] if index < len(starts) else None
        return None if start is None else start + (cell_line - 1 if cell_line else 0)
    try:
        cells = cell_source_lines(text)
    except ValueError:
        return None
    if index >= len(cells) or not cells[index]:
        return None
    return json_line_of(cells[index], cell_line)


def text_cell_starts(text: str, sources: List[str]) -> List[Optional[int]]:
    """For each cell's source, the 1-based line of ``text`` where its first line is, searching
    forward from the previous cell (jupytext keeps code verbatim; magics may gain a ``# ``)."""
    lines = text.splitlines()
    starts: List[Optional[int]] = []
    at = 0
    for source in sources:
        first = next((line for line in source.splitlines() if line.strip()), None)
        found = None
        if first is not None:
            for number in range(at, len(lines)):
                if lines[number] == first or lines[number] in (f"# {first}", f"#{first}"):
                    found = number
                    break
        if found is not None:
            offset = next(i for i, line in enumerate(source.splitlines()) if line.strip())
            starts.append(found + 1 - offset)
            at = found + 1
        else:
            starts.append(None)
    return starts


def json_error_line(text: str) -> Optional[int]:
    """The line where ``text`` stops being valid JSON, or None when it parses."""
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        return exc.lineno
    except (ValueError, RecursionError):  # too deeply nested to parse: no line to point at
        return None
    return None


def failing_cell_line(traceback: List[str]) -> Optional[int]:
    """The 1-based line within the failing cell that raised, read from an IPython traceback.

    The first frame of a cell's traceback is the cell itself, so the first match is ours.
    """
    text = ANSI.sub("", "\n".join(traceback))
    match = CELL_LINE.search(text) or ARROW_LINE.search(text)
    return int(match.group(1)) if match else None


def json_line_of(pieces: List[Tuple[int, str]], cell_line: Optional[int]) -> int:
    """Map a line of the cell's source to the JSON line of the string piece that holds it."""
    json_line, _ = pieces[0]
    if cell_line is None:
        return json_line
    seen = 1  # the cell line at which the current piece starts
    for json_line_here, text in pieces:
        if seen > cell_line:
            break
        json_line = json_line_here
        seen += text.count("\n")
    return json_line


def cell_source_lines(text: str) -> List[List[Tuple[int, str]]]:
    """For each cell of a notebook's raw JSON, its source pieces as ``(1-based line, text)``.

    nbformat stores a source as a list of strings, one per line, each on its own JSON line; a
    single string is one piece. Raises ``ValueError`` when the text is not a notebook.
    """
    scan = _JsonScanner(text)
    cells: List[List[Tuple[int, str]]] = []
    for key in scan.members():
        if key != "cells":
            scan.skip_value()
            continue
        for _ in scan.items():
            pieces: List[Tuple[int, str]] = []
            for cell_key in scan.members():
                if cell_key == "source" and scan.peek() == "[":
                    for _ in scan.items():
                        pieces.append((scan.line(), scan.string()))
                elif cell_key == "source":
                    pieces.append((scan.line(), scan.string()))
                else:
                    scan.skip_value()
            cells.append(pieces)
    return cells


class _JsonScanner:
    """Walk JSON text keeping positions (the json module keeps none); ValueError on bad input."""

    _ws = re.compile(r"[ \t\n\r]*")
    _decoder = json.JSONDecoder()

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self._newlines = [i for i, char in enumerate(text) if char == "\n"]

    def peek(self) -> str:
        self.pos = self._ws.match(self.text, self.pos).end()  # type: ignore[union-attr]
        return self.text[self.pos:self.pos + 1]

    def expect(self, char: str) -> None:
        if self.peek() != char:
            raise ValueError(f"expected {char!r} at offset {self.pos}")
        self.pos += 1

    def line(self) -> int:
        self.peek()
        return bisect.bisect_left(self._newlines, self.pos) + 1

    def string(self) -> str:
        self.expect('"')
        value, self.pos = scanstring(self.text, self.pos)
        return value

    def skip_value(self) -> None:
        self.peek()
        _, self.pos = self._decoder.raw_decode(self.text, self.pos)

    def _sequence(self, open_: str, close: str) -> Iterator[None]:
        self.expect(open_)
        if self.peek() == close:
            self.pos += 1
            return
        while True:
            yield  # the caller consumes one element here
            char = self.peek()
            self.pos += 1
            if char == close:
                return
            if char != ",":
                raise ValueError(f"expected ',' or {close!r} at offset {self.pos - 1}")

    def items(self) -> Iterator[None]:
        """Step through an array; the caller consumes each element."""
        return self._sequence("[", "]")

    def members(self) -> Iterator[str]:
        """Step through an object's keys; the caller consumes each value."""
        for _ in self._sequence("{", "}"):
            key = self.string()
            self.expect(":")
            yield key
