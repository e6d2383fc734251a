"""GitLab CI: collapsible sections in the job log, around each failing notebook's details.

Active when ``GITLAB_CI=true``, or as ``NBCI_GITLAB`` says (``true`` or ``false``, over ``GITLAB_CI``).
GitLab folds the lines between ``\\e[0Ksection_start:TIME:NAME[collapsed=true]\\r\\e[0KHEADER`` and
``\\e[0Ksection_end:TIME:NAME\\r\\e[0K``; nbci writes those markers itself, with names of its own.

Notebook text is never a marker: every line the console writes in GitLab mode goes through
``GitLabLog.write``, which drops escape sequences (colours, cursor moves, hyperlinks) and shows any
other escape character, CSI or carriage return as ``\\x1b``, ``\\x9b``, ``\\r``, so no text can open or
close a section, clear a line or hide one. Markers need both an escape character and a carriage
return, and notebook text keeps neither.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from dataclasses import dataclass, field
from typing import Iterator, Mapping, Union

from nbci.report.workflow_commands import CommandLog
from nbci.text import no_controls

CLEAR_LINE = "\x1b[0K"


def enabled(environ: Mapping[str, str]) -> bool:
    """GitLab mode: ``NBCI_GITLAB`` when it is ``true`` or ``false``, else whether ``GITLAB_CI`` is ``true``."""
    chosen = environ.get("NBCI_GITLAB", "").strip().lower()
    if chosen in ("true", "false"):
        return chosen == "true"
    return environ.get("GITLAB_CI") == "true"


@dataclass
class GitLabLog:
    """The job log in GitLab mode: ``log`` given only inert text, plus nbci's own sections."""

    log: CommandLog
    _numbers: Iterator[int] = field(default_factory=lambda: itertools.count(1), repr=False)

    def write(self, text: str) -> None:
        """Write ``text`` made inert (see ``nbci.text.no_controls``)."""
        self.log.write(no_controls(text))

    @contextlib.contextmanager
    def section(self, header: str, collapsed: bool = True) -> Iterator[None]:
        """A collapsible section titled ``header`` (made inert, one line) around what is written inside."""
        name = f"nbci_{next(self._numbers)}"
        option = "[collapsed=true]" if collapsed else ""
        title = no_controls(header).replace("\n", " ")
        self.log.write(f"{CLEAR_LINE}section_start:{int(time.time())}:{name}{option}\r{CLEAR_LINE}{title}\n")
        try:
            yield
        finally:
            self.log.write(f"{CLEAR_LINE}section_end:{int(time.time())}:{name}\r{CLEAR_LINE}\n")


Log = Union[CommandLog, GitLabLog]


def job_log(log: CommandLog, environ: Mapping[str, str]) -> Log:
    """``log`` as the console should use it: wrapped in a ``GitLabLog`` in GitLab mode."""
    return GitLabLog(log) if enabled(environ) else log


@contextlib.contextmanager
def section(log: Log, header: str) -> Iterator[None]:
    """A collapsed section in GitLab mode; elsewhere just ``header`` on a line of its own."""
    if isinstance(log, GitLabLog):
        with log.section(header):
            yield
        return
    log.write(header + "\n")
    yield
