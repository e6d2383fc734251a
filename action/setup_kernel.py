"""Make the user's environment able to run the notebooks, and register it as nbci's kernel.

Run by action.yml with the user's Python (the one set up for the notebooks), after the engine
step. ``setup: python`` installs the requirements file and ipykernel; ``setup: conda`` installs
ipykernel with conda when the environment lacks it; ``setup: none`` changes nothing and needs
ipykernel to be there. The kernelspec goes under its own prefix, found through ``JUPYTER_PATH``,
so every notebook runs on this Python whatever kernel name its metadata carries.

``setup: python`` fills the environment as NBCI_INSTALL says: the requirements file, ``uv sync
--locked`` of a project with ``uv.lock`` (a lock that no longer matches pyproject.toml fails with
uv's reason), or ``pip install .`` of a project; ``setup: pixi`` uses the pixi environment as
setup-pixi built it. An environment without ipykernel (setup: none, in a container, or pixi) fails
with what to add. With NBCI_COVERAGE=true, coverage.py goes everywhere ipykernel goes, installed the
same way, and its absence fails the same way.

Environment:
  NBCI_SETUP          python | conda | pixi | none
  NBCI_INSTALL        setup: python: requirements | uv-sync | project | none (default: requirements)
  NBCI_PROJECT_DIR    uv-sync and project: the project's folder
  NBCI_EXTRAS, NBCI_DEPENDENCY_GROUPS
                      uv-sync and project: extras and dependency groups to install, separated by spaces
  NBCI_CONDA_INSTALLER miniconda | micromamba: which installs a missing ipykernel with setup: conda
  NBCI_ENV_RESTORED   ``true`` when the environment came whole from the action's cache: nothing to install
  NBCI_REQUIREMENTS   the requirements file (setup: python), or empty
  NBCI_INSTALLER      uv | pip; NBCI_UV is the uv executable, NBCI_UV_CACHE_DIR its cache
  NBCI_KERNEL_DIR     the prefix to install the kernelspec under
  NBCI_KERNEL_INPUT   the action's ``kernel`` input: when set, notebooks use that kernel instead
  NBCI_COVERAGE       ``true``: the kernels measure coverage, so the environment needs coverage.py too
Outputs: ``python``, ``kernel`` (for NBCI_KERNEL) and ``jupyter-path`` (for JUPYTER_PATH).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from common import StepError, main, required, run, uv_environment, wc

KERNEL_NAME = "nbci-user"


def kernel_packages(environ: Mapping[str, str]) -> List[str]:
    """What the kernels need in the environment: ipykernel, and coverage.py when they measure coverage."""
    return ["ipykernel", *(["coverage"] if environ.get("NBCI_COVERAGE") == "true" else [])]


def missing(environ: Mapping[str, str]) -> List[str]:
    """The kernel packages this Python cannot import (each package's name is its module's)."""
    return [name for name in kernel_packages(environ) if importlib.util.find_spec(name) is None]


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
    if environ.get("NBCI_ENV_RESTORED") == "true" and not missing(environ):
        print(f"The environment was restored from the cache ({sys.prefix}): nothing to install.", flush=True)
        return
    if setup == "python":
        install = environ.get("NBCI_INSTALL") or "requirements"
        packages, folder = python_packages(environ, install, requirements)
        if install == "uv-sync":
            uv_sync(environ)  # an exact sync: it leaves no pip in the environment, so uv adds ipykernel
            environ = {**environ, "NBCI_INSTALLER": "uv", "NBCI_UV": environ.get("NBCI_UV") or shutil.which("uv") or ""}
        run(install_command(environ, packages), env=uv_environment(environ), cwd=folder)
        return
    if requirements:
        print(wc.annotation("notice", f"setup: {setup} does not install {requirements}; "
                                      "list the packages in the environment itself",
                            title="notebook-ci"), flush=True)
    absent = missing(environ)
    if not absent:
        return
    if setup == "conda":
        run(conda_install(environ, absent))
        return
    wanted, what = " ".join(absent), " and ".join(absent) + (" is" if len(absent) == 1 else " are")
    if setup == "pixi":
        raise StepError(f"{what} not in the pixi environment of {sys.executable}: "
                        f"add it to the manifest (pixi add {wanted}) and commit pixi.toml and pixi.lock")
    raise StepError(
        f"{what} not installed for {sys.executable}: install it in that environment "
        f"(in a job container: add `RUN python -m pip install {wanted}` to the image), "
        "or let the action set up Python (setup: python)"
    )


def conda_install(environ: Mapping[str, str], packages: Sequence[str] = ("ipykernel",)) -> List[str]:
    """The command that installs ``packages`` into this conda environment, with conda or micromamba."""
    if environ.get("NBCI_CONDA_INSTALLER") == "micromamba":
        mamba = environ.get("MAMBA_EXE") or shutil.which("micromamba")
        if not mamba:
            raise StepError("conda-installer: micromamba, but no micromamba was found (MAMBA_EXE is not set)")
        return [mamba, "install", "--yes", "--prefix", sys.prefix, "--channel", "conda-forge", *packages]
    conda = environ.get("CONDA_EXE") or shutil.which("conda")
    if not conda:
        raise StepError("setup: conda, but no conda executable was found (CONDA_EXE is not set)")
    return [conda, "install", "--yes", "--prefix", sys.prefix, *packages]


def names(environ: Mapping[str, str], name: str) -> List[str]:
    """A space-separated list input (extras, dependency groups)."""
    return environ.get(name, "").split()


def python_packages(environ: Mapping[str, str], install: str, requirements: str) -> Tuple[List[str], Optional[Path]]:
    """What setup: python installs besides uv sync (pip arguments), and the folder to install from."""
    if install == "project":
        # From the project's folder, as repo2docker does: `pip install .` with the extras asked for.
        extras = names(environ, "NBCI_EXTRAS")
        project = "." + (f"[{','.join(extras)}]" if extras else "")
        groups = [arg for group in names(environ, "NBCI_DEPENDENCY_GROUPS") for arg in ("--group", group)]
        return [project, *groups, *kernel_packages(environ)], Path(required(environ, "NBCI_PROJECT_DIR")).resolve()
    if install == "requirements" and requirements:
        # From the file's folder, so relative paths in it mean the same to pip and uv.
        return ["-r", Path(requirements).name, *kernel_packages(environ)], Path(requirements).resolve().parent
    return kernel_packages(environ), None


def uv_sync(environ: Mapping[str, str]) -> None:
    """Install the project's locked environment into this Python's environment, with uv."""
    uv = environ.get("NBCI_UV") or shutil.which("uv")
    if not uv:
        raise StepError("uv.lock needs uv, and the engine step found none (NBCI_UV is not set)")
    options = [arg for extra in names(environ, "NBCI_EXTRAS") for arg in ("--extra", extra)]
    options += [arg for group in names(environ, "NBCI_DEPENDENCY_GROUPS") for arg in ("--group", group)]
    # --locked: a uv.lock that no longer matches pyproject.toml is an error, not silently re-solved
    env = {**uv_environment(environ), "UV_PROJECT_ENVIRONMENT": sys.prefix, "UV_PYTHON_DOWNLOADS": "never"}
    run([uv, "sync", "--locked", "--python", sys.executable, *options], env=env,
        cwd=Path(required(environ, "NBCI_PROJECT_DIR")).resolve())


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
