"""A notebook file's JSON with some values replaced in place, the rest of its text byte for byte.

``--update-outputs`` replaces the outputs and execution counts of some cells. Loading the file and
dumping it whole would rewrite whatever Python's ``json`` writes another way (a number such as
``1e3``, an escape such as ``\\/``, uneven indentation); so each replaced value's span is found in
the text and only that span is rewritten, in the file's layout: its indentation, separators,
escapes and line ends.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from json.decoder import scanstring
from typing import Any, Dict, List, Optional, Tuple

Span = Tuple[int, int]
BLANK = re.compile(r"[ \t\n\r]*")
DECODER = json.JSONDecoder()


@dataclass(frozen=True)
class Layout:
    """How a JSON file is written: indentation (None: on one line), separators, escapes, line ends."""

    indent: Optional[str]
    separators: Optional[Tuple[str, str]]
    ascii_only: bool
    newline: str
    last_newline: bool

    @classmethod
    def of(cls, text: str) -> "Layout":
        """The layout of ``text``, read from its second line and the characters it uses."""
        second = text.split("\n", 2)[1] if text.count("\n") > 1 else ""
        indent = second[:len(second) - len(second.lstrip(" \t"))] if second.strip() else None
        compact = indent is None and '":' in text and '": ' not in text  # one line without spaces
        separators = (",", ":") if compact else (",", ": ") if indent else None
        return cls(indent, separators, text.isascii() and "\\u" in text, "\r\n" if "\r\n" in text else "\n",
                   text.endswith("\n"))

    def dumps(self, value: Any, base: str = "") -> str:
        """``value`` in this layout, each line after its first indented by ``base`` more."""
        text = json.dumps(value, indent=self.indent, ensure_ascii=self.ascii_only, separators=self.separators)
        return text.replace("\n", self.newline + base)  # JSON text holds no raw newline of its own


def json_like(data: Any, original: str) -> str:
    """``data`` as a whole JSON file laid out like ``original``, its last newline too."""
    layout = Layout.of(original)
    text = layout.dumps(data)
    return text + layout.newline if layout.last_newline else text


def members(text: str, start: int) -> Dict[str, Span]:
    """The span of each member's value in the JSON object at ``text[start]``; empty when it is not one."""
    spans: Dict[str, Span] = {}
    if text[start] != "{":
        return spans
    at = BLANK.match(text, start + 1).end()  # type: ignore[union-attr]
    while text[at] != "}":
        if text[at] != '"':
            raise ValueError(f"not a JSON object member at character {at}")
        key, at = scanstring(text, at + 1)
        at = BLANK.match(text, BLANK.match(text, at).end() + 1).end()  # type: ignore[union-attr]
        end = DECODER.raw_decode(text, at)[1]
        spans[key] = (at, end)
        at = after_separator(text, end, "}")
    return spans


def items(text: str, start: int) -> List[Span]:
    """The span of each item in the JSON array at ``text[start]``."""
    spans: List[Span] = []
    at = BLANK.match(text, start + 1).end()  # type: ignore[union-attr]
    while text[at] != "]":
        end = DECODER.raw_decode(text, at)[1]
        spans.append((at, end))
        at = after_separator(text, end, "]")
    return spans


def after_separator(text: str, at: int, closing: str) -> int:
    """Where the next member or item starts after a value ending at ``at``, or the ``closing`` bracket."""
    at = BLANK.match(text, at).end()  # type: ignore[union-attr]
    if text[at] not in (",", closing):
        raise ValueError(f"expected ',' or {closing!r} at character {at}")
    return BLANK.match(text, at + 1).end() if text[at] == "," else at  # type: ignore[union-attr]


def cell_spans(text: str) -> Optional[List[Dict[str, Span]]]:
    """The spans of each cell's member values in a notebook file's ``text``; None when it has no list
    of cells where JSON says it does."""
    try:
        top = members(text, BLANK.match(text).end())  # type: ignore[union-attr]
        if "cells" not in top or text[top["cells"][0]] != "[":
            return None
        return [members(text, start) for start, _ in items(text, top["cells"][0])]
    except (ValueError, IndexError, RecursionError):
        return None


def spliced(text: str, values: Dict[Span, Any]) -> str:
    """``text`` with each span replaced by its value in the text's layout, indented as its line is."""
    layout, parts, at = Layout.of(text), [], 0
    for (start, end), value in sorted(values.items()):
        line = text[text.rfind("\n", 0, start) + 1:start]
        parts += [text[at:start], layout.dumps(value, line[:len(line) - len(line.lstrip(" \t"))])]
        at = end
    return "".join(parts + [text[at:]])
