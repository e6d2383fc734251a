"""Install the nbci engine into its own virtual environment, apart from the user's packages.

The engine (nbclient, jupyter_client, ...) never shares an environment with the notebooks, so it
cannot upgrade, downgrade or conflict with what they need, and it installs on PEP 668 systems.
Run by action.yml with the Python that will run the notebooks.

Environment:
  NBCI_ENGINE_DIR     where to create the virtual environment
  NBCI_INSTALLER      ``uv`` (default) or ``pip``
  NBCI_UV_CACHE_DIR   uv's cache folder when the action caches it (optional)
Outputs: ``nbci`` (the engine's executable), ``uv`` (a uv executable; empty with pip).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Dict, Mapping

from common import ACTION_PATH, StepError, main, required, run, uv_environment, venv_executable


def bootstrap_uv(venv: Path) -> Path:
    """Install uv with pip into the engine's venv (when there is no uv on PATH)."""
    run([venv_executable(venv, "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "uv"])
    return venv_executable(venv, "uv")


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
    uv = None
    if installer == "uv":
        uv = Path(uv_on_path) if uv_on_path else bootstrap_uv(venv)
        run([uv, "pip", "install", "--python", python, action_path], env=uv_environment(environ))
    else:
        run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", action_path])
    nbci = venv_executable(venv, "nbci")
    run([nbci, "--version"])
    return {"nbci": str(nbci), "uv": str(uv) if uv else ""}


if __name__ == "__main__":
    sys.exit(main("Install the nbci engine", install_engine))
