"""Make the user's environment able to run the notebooks, and register it as nbci's kernel.

Run by action.yml with the user's Python (the one set up for the notebooks), after the engine
step. ``setup: python`` installs the requirements file and ipykernel; ``setup: conda`` installs
ipykernel with conda when the environment lacks it; ``setup: none`` changes nothing and needs
ipykernel to be there. The kernelspec goes under its own prefix, found through ``JUPYTER_PATH``,
so every notebook runs on this Python whatever kernel name its metadata carries.

Environment:
  NBCI_SETUP          python | conda | none
  NBCI_ENV_RESTORED   ``true`` when the environment came whole from the action's cache: nothing to install
  NBCI_REQUIREMENTS   the requirements file (setup: python), or empty
  NBCI_INSTALLER      uv | pip; NBCI_UV is the uv executable, NBCI_UV_CACHE_DIR its cache
  NBCI_KERNEL_DIR     the prefix to install the kernelspec under
  NBCI_KERNEL_INPUT   the action's ``kernel`` input: when set, notebooks use that kernel instead
Outputs: ``python``, ``kernel`` (for NBCI_KERNEL) and ``jupyter-path`` (for JUPYTER_PATH).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path
from typing import Dict, List, Mapping

from common import StepError, main, required, run, uv_environment, wc

KERNEL_NAME = "nbci-user"


def has_ipykernel() -> bool:
    return importlib.util.find_spec("ipykernel") is not None


def install_command(environ: Mapping[str, str], packages: List[str]) -> List[str]:
    """The command that installs ``packages`` (pip arguments) into this Python."""
    if (environ.get("NBCI_INSTALLER") or "uv") == "uv":
        return [required(environ, "NBCI_UV"), "pip", "install", "--python", sys.executable, *packages]
    return [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", *packages]


def prune_uv_cache(environ: Mapping[str, str]) -> None:
    """Keep only what is slow to rebuild (wheels built from source) in the cache that is saved."""
    if environ.get("NBCI_UV_CACHE_DIR") and environ.get("NBCI_UV"):
        run([environ["NBCI_UV"], "cache", "prune", "--ci"], env=uv_environment(environ))


def prepare_environment(environ: Mapping[str, str]) -> None:
    """Install what the setup mode installs; make sure ipykernel is importable."""
    setup = required(environ, "NBCI_SETUP")
    requirements = environ.get("NBCI_REQUIREMENTS", "")
    if environ.get("NBCI_ENV_RESTORED") == "true" and has_ipykernel():
        print(f"The environment was restored from the cache ({sys.prefix}): nothing to install.", flush=True)
        return
    if setup == "python":
        # From the file's folder, so relative paths in it mean the same to pip and uv.
        folder = Path(requirements).resolve().parent if requirements else None
        packages = (["-r", Path(requirements).name] if requirements else []) + ["ipykernel"]
        run(install_command(environ, packages), env=uv_environment(environ), cwd=folder)
        return
    if requirements:
        print(wc.annotation("notice", f"setup: {setup} does not install {requirements}; "
                                      "list the packages in the environment itself",
                            title="notebook-ci"), flush=True)
    if has_ipykernel():
        return
    if setup == "conda":
        conda = environ.get("CONDA_EXE") or shutil.which("conda")
        if not conda:
            raise StepError("setup: conda, but no conda executable was found (CONDA_EXE is not set)")
        run([conda, "install", "--yes", "--prefix", sys.prefix, "ipykernel"])
        return
    raise StepError(
        f"ipykernel is not installed for {sys.executable}: install it in that environment, "
        "or let the action set up Python (setup: python)"
    )


def register_kernel(environ: Mapping[str, str]) -> Dict[str, str]:
    """Prepare the environment, register it as ``nbci-user``; return the step outputs."""
    prepare_environment(environ)
    prune_uv_cache(environ)
    prefix = Path(required(environ, "NBCI_KERNEL_DIR"))
    version = ".".join(map(str, sys.version_info[:3]))
    run([sys.executable, "-m", "ipykernel", "install", "--prefix", prefix, "--name", KERNEL_NAME,
         "--display-name", f"Python {version} (notebook-ci)"])
    # The user's own kernels (an R kernel in a conda env, say) stay reachable for `kernel:`.
    jupyter_path = [str(prefix / "share" / "jupyter"), str(Path(sys.prefix) / "share" / "jupyter")]
    return {
        "python": sys.executable,
        "kernel": environ.get("NBCI_KERNEL_INPUT") or KERNEL_NAME,
        "jupyter-path": os.pathsep.join(jupyter_path),
    }


if __name__ == "__main__":
    sys.exit(main("Prepare the notebooks' environment", register_kernel))
