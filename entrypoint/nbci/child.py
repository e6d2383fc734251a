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
import math
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, List, Mapping, Optional, Set

MEMORY_BYTES = 4 * 2**30  # the child's address space
HOME = Path(__file__).resolve().parents[1]  # the folder nbci is imported from: the child's first import path
LIVE: Set["subprocess.Popen[str]"] = set()  # children running now, for kill_all
LIVE_LOCK = threading.Lock()


class ChildTimeout(Exception):
    """The child ran past its time limit and was killed."""


class ChildFailed(Exception):
    """The child exited with an error (its last lines of stderr), out of memory included."""


def call(function: str, args: List[Any], seconds: float, environ: Optional[Mapping[str, str]] = None,
         memory: int = MEMORY_BYTES) -> Any:
    """``function`` (``nbci.module:name``) called on ``args`` in a child killed after ``seconds``, with at
    most ``memory`` bytes of address space and without the runner's files and tokens in its environment
    (unless ``environ`` is given); its JSON answer. ``ChildTimeout`` or ``ChildFailed`` otherwise."""
    from nbci.kernels import without_runner_files

    payload = json.dumps({"function": function, "args": args, "memory": memory, "cwd": os.getcwd(),
                          "seconds": seconds}, default=str)
    env = {**(without_runner_files(os.environ) if environ is None else environ), "PYTHONPATH": str(HOME)}
    child = subprocess.Popen([sys.executable, "-m", "nbci.child"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, encoding="utf-8", env=env, cwd=HOME)
    with LIVE_LOCK:
        LIVE.add(child)
    try:
        out, err = child.communicate(payload, timeout=seconds)
    except subprocess.TimeoutExpired:
        child.kill()
        child.communicate()
        raise ChildTimeout(f"took over {seconds:g} s") from None
    finally:
        with LIVE_LOCK:
            LIVE.discard(child)
    if child.returncode != 0:
        lines = err.strip().splitlines()
        raise ChildFailed(lines[-1][-500:] if lines else f"exit status {child.returncode}")
    return json.loads(out)


def kill_all() -> None:
    """Kill every child running now (nbci was told to stop: no answer is waited for)."""
    with LIVE_LOCK:
        children = list(LIVE)
    for child in children:
        try:
            child.kill()
        except OSError:
            pass


def main() -> None:
    """The child: one call read from stdin, its answer written to stdout as JSON."""
    request = json.loads(sys.stdin.read())
    die_with_parent()
    limit_memory(int(request["memory"]))
    limit_cpu(float(request["seconds"]))
    os.chdir(request["cwd"])  # after the imports of startup, which came from nbci's folder
    module, _, name = str(request["function"]).partition(":")
    if not module.startswith("nbci."):
        raise ValueError(f"not an nbci function: {request['function']!r}")
    answer = getattr(importlib.import_module(module), name)(*request["args"])
    sys.stdout.write(json.dumps(answer))


def die_with_parent() -> None:
    """Be killed when the thread that started this child ends, nbci killed included (Linux)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent was already gone
        os._exit(1)


def limit_cpu(seconds: float) -> None:
    """Stop this process after ``seconds`` of CPU (and one more), even if nobody is left to kill it."""
    try:
        import resource

        limit = math.ceil(seconds) + 1
        resource.setrlimit(resource.RLIMIT_CPU, (limit, limit + 1))
    except (ImportError, ValueError, OSError):
        pass


def limit_memory(size: int) -> None:
    """Cap this process's address space at ``size`` bytes, where the platform allows it."""
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (size, size))
    except (ImportError, ValueError, OSError):
        pass


if __name__ == "__main__":
    main()
