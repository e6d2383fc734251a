"""GitHub Actions workflow commands and environment files, escaped in this one place.

The runner reads ``::name key=value,key=value::message`` lines from a step's output. In the
message ("data") ``%``, ``\\r`` and ``\\n`` must be escaped; in property values ``:`` and ``,``
too, or a path like ``a,b.ipynb`` would end the property early. Step outputs go to the file named
by ``$GITHUB_OUTPUT`` as heredocs whose delimiter is random, so no value can end its own entry;
the job summary is Markdown appended to the file named by ``$GITHUB_STEP_SUMMARY``.

Functions here return text and never print, so callers decide where it goes and tests read it.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Iterable, Mapping, Optional, Tuple, Union

Property = Union[str, int, None]

# Python-style keyword -> the property name the runner expects.
PROPERTY_NAMES = {"end_line": "endLine", "col": "col", "end_column": "endColumn"}


def escape_data(text: str) -> str:
    """Escape a command's message: ``%`` first, so the escapes themselves survive."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """Escape a property value: as data, plus ``:`` and ``,`` which delimit properties."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def command(name: str, message: str = "", **properties: Property) -> str:
    """One workflow command line (no newline); properties that are None or empty are left out.

    >>> command("error", "it broke", file="a.ipynb", line=3, title=None)
    '::error file=a.ipynb,line=3::it broke'
    """
    props = ",".join(
        f"{PROPERTY_NAMES.get(key, key)}={escape_property(str(value))}"
        for key, value in properties.items()
        if value is not None and str(value) != ""
    )
    return f"::{name}{' ' + props if props else ''}::{escape_data(message)}"


def annotation(
    level: str,
    message: str,
    *,
    file: Optional[str] = None,
    line: Optional[int] = None,
    end_line: Optional[int] = None,
    title: Optional[str] = None,
) -> str:
    """An ``error``, ``warning`` or ``notice`` annotation, optionally pinned to a file and line."""
    if level not in ("error", "warning", "notice"):
        raise ValueError(f"annotation level must be error, warning or notice, not {level!r}")
    return command(level, message, file=file, line=line, end_line=end_line, title=title)


def group(title: str, body: str) -> str:
    """A collapsible log group around ``body``, which is shown verbatim.

    Lines in ``body`` that look like workflow commands (a notebook printing ``::error::`` or
    ``::add-mask::``) are not obeyed: the runner's command processing is stopped around the
    body with a random token, which the body cannot guess.
    """
    lines = [command("group", title)]
    if body:
        token = random_token()
        lines += [command("stop-commands", token), body.rstrip("\n"), f"::{token}::"]
    lines.append(command("endgroup"))
    return "\n".join(lines) + "\n"


def random_token() -> str:
    return "nbci_" + secrets.token_hex(16)


def heredoc(name: str, value: str) -> str:
    """One ``$GITHUB_OUTPUT`` entry, safe for any value: ``name<<DELIM``, the value, ``DELIM``."""
    if not name or "<<" in name or "\n" in name or "=" in name:
        raise ValueError(f"not a usable output name: {name!r}")
    delimiter = random_token()
    while delimiter in value:  # pragma: no cover - 128 random bits
        delimiter = random_token()
    return f"{name}<<{delimiter}\n{value}\n{delimiter}\n"


def write_outputs(path: Union[str, Path], outputs: Union[Mapping[str, str], Iterable[Tuple[str, str]]]) -> None:
    """Append step outputs to the ``$GITHUB_OUTPUT`` file, in the given order."""
    items = outputs.items() if isinstance(outputs, Mapping) else outputs
    text = "".join(heredoc(name, value) for name, value in items)
    with open(path, "a", encoding="utf-8", newline="\n") as file:
        file.write(text)


def append_summary(path: Union[str, Path], markdown: str) -> None:
    """Append Markdown to the ``$GITHUB_STEP_SUMMARY`` file."""
    with open(path, "a", encoding="utf-8", newline="\n") as file:
        file.write(markdown)
