"""Bounding text a notebook controls: one helper, used wherever such text is stored or shown."""

from __future__ import annotations


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, saying how many were cut."""
    return text if len(text) <= limit else text[:limit] + f"… [{len(text) - limit} more characters]"
