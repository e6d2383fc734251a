#!/usr/bin/env bash
# Run a command inside the notebooks' environment: `in_env.sh COMMAND [ARGS...]`.
# With setup: conda the environment is activated first, by conda or micromamba as
# NBCI_CONDA_INSTALLER says (its activation scripts run and its bin folder leads PATH), so kernels started by the command inherit it; with setup: python the
# notebooks' virtual environment (NBCI_PYTHON_ENV) leads PATH the same way. A COMMAND of `python`
# means the environment's Python: NBCI_PYTHON when set (setup-python's python-path), else the
# `python` (or `python3`) found on PATH.
set -euo pipefail

if [ -n "${NBCI_CONDA_ENV:-}" ] && [ "${NBCI_CONDA_INSTALLER:-miniconda}" = micromamba ]; then
  # setup-micromamba exports MAMBA_EXE; its shell hook defines the `micromamba` shell function.
  eval "$("${MAMBA_EXE:?conda-installer: micromamba, but MAMBA_EXE is not set}" shell hook --shell bash)"
  micromamba activate "$NBCI_CONDA_ENV"
elif [ -n "${NBCI_CONDA_ENV:-}" ]; then
  # setup-miniconda exports CONDA; conda.sh defines the `conda` shell function.
  # shellcheck disable=SC1091
  source "${CONDA:?setup: conda, but CONDA is not set}/etc/profile.d/conda.sh"
  conda activate "$NBCI_CONDA_ENV"
fi
if [ -n "${NBCI_PYTHON_ENV:-}" ]; then
  # setup: python: the notebooks' virtual environment leads PATH, as `activate` would do
  export VIRTUAL_ENV="$NBCI_PYTHON_ENV"
  PATH="$NBCI_PYTHON_ENV/bin:$NBCI_PYTHON_ENV/Scripts:$PATH"
fi
if [ "${1:-}" = python ]; then
  python=${NBCI_PYTHON:-}
  if [ -z "$python" ] || [ -n "${NBCI_CONDA_ENV:-}" ]; then
    python=$(command -v python || command -v python3 || true)
  fi
  if [ -z "$python" ]; then
    echo "::error title=notebook-ci found no Python::no python or python3 on PATH; use setup: python or install Python first"
    exit 1
  fi
  shift
  set -- "$python" "$@"
fi
exec "$@"
