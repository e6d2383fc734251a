"""What the action's helper scripts share: running commands, reporting errors, step outputs.

The helpers run with whatever Python sets up the notebooks (3.8 or later, standard library only)
and use the engine's own workflow-command module straight from the action's checkout, so
escaping stays in one place.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Callable, Dict, List, Mapping, Optional, TextIO

ACTION_PATH = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ACTION_PATH / "entrypoint"))

from nbci.report import workflow_commands as wc  # noqa: E402


class StepError(Exception):
    """A setup step failed; the message says what and how to fix it."""


def venv_executable(venv: Path, name: str) -> Path:
    """An executable inside a virtual environment, on Windows and elsewhere."""
    if os.name == "nt":
        return venv / "Scripts" / f"{name}.exe"
    return venv / "bin" / name


REASON_LINES = 5  # the last lines of a failed command's error output that its annotation quotes
# The runner's files a step writes to change later steps (GITHUB_ENV: variables such as BASH_ENV;
# GITHUB_OUTPUT: the action's outputs) and its tokens (ACTIONS_*), as the engine's kernels.py hides
# them from kernels: the repository's code (postBuild, a setup.py that an install runs) gets none.
HIDDEN_VARIABLES = ("GITHUB_ENV", "GITHUB_PATH", "GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY", "GITHUB_STATE")
HIDDEN_PREFIXES = ("ACTIONS_",)


def without_runner_files(environ: Mapping[str, str]) -> Dict[str, str]:
    """``environ`` less the runner's command files and tokens."""
    return {key: value for key, value in environ.items()
            if key not in HIDDEN_VARIABLES and not key.startswith(HIDDEN_PREFIXES)}


def relay(source: IO[bytes], target: TextIO, kept: Optional[List[str]] = None) -> None:
    """Copy ``source`` to ``target`` line by line with no workflow command left in it; keep the lines in ``kept``."""
    for raw in iter(source.readline, b""):
        line = raw.decode("utf-8", "replace")
        if kept is not None:
            kept.append(line)
        target.write(wc.no_command(line))
        target.flush()


def run(command: List[object], env: Optional[Mapping[str, str]] = None, cwd: Optional[Path] = None) -> None:
    """Run a command without the runner's files and tokens, its output in the log but inert; raise
    ``StepError`` with its last error lines when it fails."""
    args = [str(part) for part in command]
    print("+ " + (f"(cd {cwd}) " if cwd else "") + " ".join(args), flush=True)
    environ = without_runner_files(os.environ if env is None else env)
    try:
        proc = subprocess.Popen(args, env=environ, cwd=cwd, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError as exc:
        raise StepError(f"{Path(args[0]).name} failed: {exc}") from None
    errors: List[str] = []
    assert proc.stdout is not None and proc.stderr is not None
    reader = threading.Thread(target=relay, args=(proc.stderr, sys.stderr, errors), daemon=True)
    reader.start()
    relay(proc.stdout, sys.stdout)
    reader.join()
    if proc.wait() != 0:
        reason = [line.strip() for line in errors if line.strip()][-REASON_LINES:]
        raise StepError("\n".join([f"{Path(args[0]).name} failed (exit code {proc.returncode})", *reason]))


def main(title: str, body: Callable[[Mapping[str, str]], Mapping[str, str]],
         environ: Mapping[str, str] = os.environ) -> int:
    """Run ``body`` in a log group; write its outputs, or report its error as an annotation."""
    print(wc.command("group", title), flush=True)
    try:
        outputs = body(environ)
    except StepError as exc:
        print(wc.command("endgroup"))
        print(wc.annotation("error", str(exc), title=f"notebook-ci: {title.lower()} failed"), flush=True)
        return 1
    print(wc.command("endgroup"), flush=True)
    if environ.get("GITHUB_OUTPUT"):
        wc.write_outputs(environ["GITHUB_OUTPUT"], outputs)
    return 0


def required(environ: Mapping[str, str], name: str) -> str:
    value = environ.get(name)
    if not value:
        raise StepError(f"{name} is not set (the action sets it)")
    return value


def uv_environment(environ: Mapping[str, str]) -> Dict[str, str]:
    """The environment for uv: its cache where the action caches it, no empty UV_ settings."""
    env = {key: value for key, value in environ.items() if not (key.startswith("UV_") and not value)}
    env.setdefault("UV_NO_PROGRESS", "1")  # spinners are noise in a CI log
    if environ.get("NBCI_UV_CACHE_DIR"):
        env["UV_CACHE_DIR"] = environ["NBCI_UV_CACHE_DIR"]
    return env
