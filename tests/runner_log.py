"""Read a job log the way the GitHub Actions runner does, to find the commands it would obey.

The runner looks at every line of a step's stdout and stderr: ``::name props::data`` after any
leading whitespace, or the older ``##[name props]data`` anywhere in the line. After
``::stop-commands::TOKEN`` it obeys nothing until a line that is the command ``TOKEN`` itself.
"""

from __future__ import annotations

import re
from typing import List, NamedTuple, Optional


class Command(NamedTuple):
    line: str
    name: str
    data: str


def parse(line: str) -> Optional[Command]:
    stripped = line.lstrip()
    if stripped.startswith("::"):
        head, sep, data = stripped[2:].partition("::")
        if sep:
            return Command(line, head.split(" ")[0], data)
    start = line.find("##[")
    if start >= 0:
        end = line.find("]", start)
        if end > 0:
            return Command(line, line[start + 3:end].split(" ")[0], line[end + 1:])
    return None


def live_commands(log: str) -> List[Command]:
    """The commands the runner would act on in ``log``, in order (stop and resume lines excluded)."""
    live: List[Command] = []
    stopped: Optional[str] = None
    for line in re.split(r"\r\n|\r|\n", log):
        command = parse(line)
        if command is None:
            continue
        if stopped is not None:
            if command.name == stopped:
                stopped = None
            continue
        if command.name == "stop-commands":
            stopped = command.data
            continue
        live.append(command)
    return live
