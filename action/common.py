"""What the action's helper scripts share: running commands, reporting errors, step outputs.

The helpers run with whatever Python sets up the notebooks (3.8 or later, standard library only)
and use the engine's own workflow-command module straight from the action's checkout, so
escaping stays in one place.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional

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


def run(command: List[object], env: Optional[Mapping[str, str]] = None, cwd: Optional[Path] = None) -> None:
    """Run a command with its output in the log; raise ``StepError`` with its last error lines when it fails."""
    args = [str(part) for part in command]
    print("+ " + (f"(cd {cwd}) " if cwd else "") + " ".join(args), flush=True)
    try:
        proc = subprocess.run(args, env=env, cwd=cwd, stderr=subprocess.PIPE)
    except OSError as exc:
        raise StepError(f"{Path(args[0]).name} failed: {exc}") from None
    errors = proc.stderr.decode("utf-8", "replace")
    sys.stdout.flush()
    sys.stderr.write("".join(wc.no_command(line) for line in errors.splitlines(keepends=True)))  # no commands
    sys.stderr.flush()
    if proc.returncode != 0:
        reason = [line.strip() for line in errors.splitlines() if line.strip()][-REASON_LINES:]
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
