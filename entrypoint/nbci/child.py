"""Work on a pull request's input in a child process with a time and a memory limit.

A repository's regular expressions can backtrack for hours and a kernel's SQLite file can hold a
query that never ends: a function that reads such input runs here, in a fresh interpreter killed
after its time limit, its address space capped, so that one bad input costs one answer, never the
run. Arguments and answers travel as JSON; the function is named ``module:function`` inside nbci.
The child starts in nbci's own folder, so that ``python -m`` puts no folder of the repository on its
import path (a ``sqlite3.py`` there would run in it), then works in the caller's working directory.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, List, Mapping, Optional

MEMORY_BYTES = 4 * 2**30  # the child's address space
HOME = Path(__file__).resolve().parents[1]  # the folder nbci is imported from: the child's first import path


class ChildTimeout(Exception):
    """The child ran past its time limit and was killed."""


class ChildFailed(Exception):
    """The child exited with an error (its last lines of stderr), out of memory included."""


def call(function: str, args: List[Any], seconds: float, environ: Optional[Mapping[str, str]] = None,
         memory: int = MEMORY_BYTES) -> Any:
    """``function`` (``nbci.module:name``) called on ``args`` in a child killed after ``seconds``, with at
    most ``memory`` bytes of address space; its JSON answer. ``ChildTimeout`` or ``ChildFailed`` otherwise."""
    payload = json.dumps({"function": function, "args": args, "memory": memory, "cwd": os.getcwd()}, default=str)
    env = {**(os.environ if environ is None else environ), "PYTHONPATH": str(HOME)}
    try:
        child = subprocess.run([sys.executable, "-m", "nbci.child"], input=payload, capture_output=True, text=True,
                               encoding="utf-8", timeout=seconds, env=env, cwd=HOME)
    except subprocess.TimeoutExpired:
        raise ChildTimeout(f"took over {seconds:g} s") from None
    if child.returncode != 0:
        lines = child.stderr.strip().splitlines()
        raise ChildFailed(lines[-1][-500:] if lines else f"exit status {child.returncode}")
    return json.loads(child.stdout)


def main() -> None:
    """The child: one call read from stdin, its answer written to stdout as JSON."""
    request = json.loads(sys.stdin.read())
    limit_memory(int(request["memory"]))
    os.chdir(request["cwd"])  # after the imports of startup, which came from nbci's folder
    module, _, name = str(request["function"]).partition(":")
    if not module.startswith("nbci."):
        raise ValueError(f"not an nbci function: {request['function']!r}")
    answer = getattr(importlib.import_module(module), name)(*request["args"])
    sys.stdout.write(json.dumps(answer))


def limit_memory(size: int) -> None:
    """Cap this process's address space at ``size`` bytes, where the platform allows it."""
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (size, size))
    except (ImportError, ValueError, OSError):
        pass


if __name__ == "__main__":
    main()
