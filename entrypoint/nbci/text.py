"""Bounding text a notebook controls: one helper, used wherever such text is stored or shown."""

from __future__ import annotations

import re

LONE_SURROGATE = re.compile("[\ud800-\udfff]")
ESCAPE_SEQUENCE = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI: colours, cursor moves, line clears
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC: titles, hyperlinks (to BEL or ST; unterminated, to the end)
    r"|\x1b[ -/]*[0-~]"  # any other two- or three-character escape
)
CONTROL = re.compile("[\x1b\x9b\r\x7f\u200e\u200f\u202a-\u202e\u2066-\u2069]")  # and bidi marks, which reorder a line


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, saying how many were cut."""
    return text if len(text) <= limit else text[:limit] + f"… [{len(text) - limit} more characters]"


def counted(count: int, noun: str) -> str:
    """``1 notebook``, ``2 notebooks``: a count and its noun in the right number."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def escape_surrogates(json_text: str) -> str:
    """JSON text with each lone surrogate (which UTF-8 cannot hold) written as its ``\\uXXXX`` escape,
    as the file it was read from had it."""
    return LONE_SURROGATE.sub(lambda found: f"\\u{ord(found.group()):04x}", json_text)


def no_controls(text: str) -> str:
    """``text`` with no escape sequence and no escape character, CSI, carriage return, DEL or bidi mark left
    in it (each shown as its escape, ``\\x1b``, ``\\u202e``)."""
    return CONTROL.sub(lambda found: repr(found.group())[1:-1], ESCAPE_SEQUENCE.sub("", text))
