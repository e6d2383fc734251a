"""GitHub Actions workflow commands and environment files, escaped in this one place.

The runner reads ``::name key=value,key=value::message`` lines from a step's output. In the
message ("data") ``%``, ``\\r`` and ``\\n`` must be escaped; in property values ``:`` and ``,``
too, or a path like ``a,b.ipynb`` would end the property early. Step outputs go to the file named
by ``$GITHUB_OUTPUT`` as heredocs whose delimiter is random, so no value can end its own entry;
the job summary is Markdown appended to the file named by ``$GITHUB_STEP_SUMMARY``.

Notebook text is never a command. In GitHub mode ``CommandLog`` keeps the runner's command
processing stopped (``::stop-commands::TOKEN``, one random token per run) around everything nbci
and its kernels print, and lifts the stop only around nbci's own commands. On top of that every
line nbci prints has ``##[`` (the runner's older command form, honoured anywhere in a line) broken
by a zero-width space, and text put on one line (paths, messages) has its line breaks escaped.

What is written (the log, outputs, the summary) has each lone surrogate, a byte of a file name
that is not UTF-8, replaced by U+FFFD, so such a name never stops a report.

Functions here return text and never print, so callers decide where it goes and tests read it;
``CommandLog`` is the one writer of the job log.
"""

from __future__ import annotations

import re
import secrets
import threading
from pathlib import Path
from typing import Iterable, List, Mapping, Optional, TextIO, Tuple, Union

from nbci.report import printable
from nbci.text import clip, no_controls

Property = Union[str, int, None]

OLD_COMMAND = "##["  # the runner's older form: "##[name]message", matched anywhere in a line
INERT_OLD_COMMAND = "##\u200b["
# Everything that ends a line for the runner or a viewer: str.splitlines() splits on all of these.
LINE_BREAKS = re.compile("[\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
LINE_CHARS = 2000  # characters of one log line; longer lines are clipped with a marker
DOUBLE_COLON = re.compile(":(?=:)")

# Python-style keyword -> the property name the runner expects.
PROPERTY_NAMES = {"end_line": "endLine", "col": "col", "end_column": "endColumn"}


def escape_data(text: str) -> str:
    """Escape a command's message: ``%`` first, so the escapes themselves survive."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def inert(text: str) -> str:
    """``text`` with the runner's ``##[`` command form broken on every line (shown the same)."""
    return text.replace(OLD_COMMAND, INERT_OLD_COMMAND)


def no_command(text: str) -> str:
    """``text`` inert, and with no ``::`` either (a zero-width space between the colons), so no parser
    of workflow commands, strict or lax, finds one in it."""
    return DOUBLE_COLON.sub(":\u200b", inert(text))


def one_line(text: str, limit: int = LINE_CHARS) -> str:
    """``text`` as one line that is no command and no terminal control: line breaks shown as escapes,
    escape sequences dropped (``no_controls``), clipped to ``limit``."""
    flat = LINE_BREAKS.sub(lambda match: repr(match.group())[1:-1], no_controls(text))
    return no_command(clip(flat, limit))


def escape_property(text: str) -> str:
    """Escape a property value: as data, plus ``:`` and ``,`` which delimit properties."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def command(name: str, message: str = "", **properties: Property) -> str:
    """One workflow command line (no newline); properties that are None or empty are left out.
    Message and properties are escaped and hold no command (``no_command``), whatever they held.

    >>> command("error", "it broke", file="a.ipynb", line=3, title=None)
    '::error file=a.ipynb,line=3::it broke'
    """
    props = ",".join(
        f"{PROPERTY_NAMES.get(key, key)}={escape_property(no_command(str(value)))}"
        for key, value in properties.items()
        if value is not None and str(value) != ""
    )
    return f"::{name}{' ' + props if props else ''}::{escape_data(no_command(message))}"


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


class CommandLog:
    """The job log: text written here is never a command; ``commands()`` issues nbci's own.

    With ``github`` on, ``open()`` stops the runner's command processing with a random token and
    ``close()`` resumes it; ``commands()`` resumes it just for its lines. Every write is whole
    under a lock, so lines from concurrent writers never interleave. Without ``github`` the
    stream gets the same inert text and no stop/resume lines.
    """

    def __init__(self, stream: TextIO, github: bool = False) -> None:
        self.stream = stream
        self.github = github
        self.token = random_token()
        self._stopped = False
        self._lock = threading.Lock()

    def _emit(self, text: str) -> None:
        with self._lock:
            self.stream.write(printable(text))
            self.stream.flush()

    def open(self) -> None:
        """Stop command processing (GitHub mode) until ``close()``."""
        if self.github and not self._stopped:
            self._stopped = True
            self._emit(command("stop-commands", self.token) + "\n")

    def close(self) -> None:
        """Resume command processing for whatever runs after nbci."""
        if self._stopped:
            self._stopped = False
            self._emit(f"::{self.token}::\n")

    def write(self, text: str) -> None:
        """Write text as it is but inert: ``##[`` broken; inside the stopped region in GitHub mode."""
        self._emit(inert(text))

    def commands(self, lines: Iterable[str]) -> None:
        """Issue nbci's own command ``lines`` (each built by ``command()``), live."""
        self._emit(self._live(list(lines)))

    def group(self, title: str, body: str) -> None:
        """A collapsible log group titled ``title`` around ``body``, which stays inert."""
        text = inert(body.rstrip("\n")) + "\n" if body.strip("\n") else ""
        self._emit(self._live([command("group", one_line(title))]) + text + self._live([command("endgroup")]))

    def _live(self, lines: List[str]) -> str:
        """``lines`` wrapped so the runner obeys them even inside the stopped region."""
        text = "".join(line + "\n" for line in lines)
        if not self._stopped or not text:
            return text
        return f"::{self.token}::\n{text}{command('stop-commands', self.token)}\n"


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
    text = printable("".join(heredoc(name, value) for name, value in items))
    with open(path, "a", encoding="utf-8", newline="\n") as file:
        file.write(text)


def append_summary(path: Union[str, Path], markdown: str) -> None:
    """Append Markdown to the ``$GITHUB_STEP_SUMMARY`` file."""
    with open(path, "a", encoding="utf-8", newline="\n") as file:
        file.write(printable(markdown))
