"""Install the nbci engine into its own virtual environment, apart from the user's packages.

The engine (nbclient, jupyter_client, ...) never shares an environment with the notebooks, so it
cannot upgrade, downgrade or conflict with what they need, and it installs on PEP 668 systems.
Run by action.yml with the Python that will run the notebooks.

The install is reproducible: every dependency, setuptools and uv come from ``requirements.txt`` beside it (exact
versions with hashes, installed with hash checking); the engine itself is then built from the
action's checkout with that setuptools, without build isolation, so nothing unhashed is fetched.

Environment:
  NBCI_ENGINE_DIR     where to create the virtual environment
  NBCI_INSTALLER      ``uv`` (default) or ``pip``
  NBCI_UV_CACHE_DIR   uv's cache folder when the action caches it (optional)
  NBCI_TEXT_NOTEBOOKS ``true``: also install jupytext, for text notebooks (``requirements-text.txt``)
  NBCI_COVERAGE       ``true``: also install coverage.py, nbci's coverage extra (``requirements-coverage.txt``)
Outputs: ``nbci`` (the engine's executable), ``uv`` (a uv executable: the one on PATH, else the engine's).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

from common import ACTION_PATH, StepError, main, required, run, uv_environment, venv_executable


LOCK = Path(__file__).with_name("requirements.txt")  # the engine's lock, compiled from requirements.in
TEXT_LOCK = Path(__file__).with_name("requirements-text.txt")  # the same plus jupytext (requirements-text.in)
COVERAGE_LOCK = Path(__file__).with_name("requirements-coverage.txt")  # coverage.py alone (requirements-coverage.in)


def install_engine(environ: Mapping[str, str], action_path: Path = ACTION_PATH) -> Dict[str, str]:
    """Create the engine's venv from this Python and install the engine; return the step outputs."""
    venv = Path(required(environ, "NBCI_ENGINE_DIR"))
    installer = environ.get("NBCI_INSTALLER") or "uv"
    if installer not in ("uv", "pip"):
        raise StepError(f"installer must be uv or pip, not {installer!r}")
    if sys.version_info < (3, 9):
        raise StepError(f"the engine needs Python 3.9 or later, and {sys.executable} is {sys.version.split()[0]}")
    uv_on_path = shutil.which("uv") if installer == "uv" else None
    run([sys.executable, "-m", "venv", "--clear", *(["--without-pip"] if uv_on_path else []), venv])
    python = venv_executable(venv, "python")
    for command in install_commands(python, Path(uv_on_path) if uv_on_path else None, action_path, locks(environ)):
        run(command, env=uv_environment(environ) if uv_on_path else None)
    nbci = venv_executable(venv, "nbci")
    run([nbci, "--version"])
    uv = Path(uv_on_path) if uv_on_path else venv_executable(venv, "uv")  # the lock has uv: uv.lock needs it
    return {"nbci": str(nbci), "uv": str(uv)}


def locks(environ: Mapping[str, str]) -> List[Path]:
    """The locks the engine installs from: its own (with jupytext for text notebooks), coverage.py's when asked."""
    engine = TEXT_LOCK if environ.get("NBCI_TEXT_NOTEBOOKS") == "true" else LOCK
    return [engine, *([COVERAGE_LOCK] if environ.get("NBCI_COVERAGE") == "true" else [])]


def install_commands(python: Path, uv: Optional[Path], action_path: Path,
                     lock_files: Sequence[Path] = (LOCK,)) -> List[List[object]]:
    """The locks with hash checking, in one install (uv included: bootstrapped with pip when none is on
    PATH), then the engine from ``action_path`` without its dependencies, built offline with the locked setuptools."""
    if uv is not None:
        pip: List[object] = [uv, "pip", "install", "--python", python]
    else:
        pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    requirements = [arg for lock in lock_files for arg in ("-r", lock)]
    return [[*pip, "--require-hashes", *requirements], [*pip, "--no-deps", "--no-build-isolation", action_path]]


if __name__ == "__main__":
    sys.exit(main("Install the nbci engine", install_engine))
