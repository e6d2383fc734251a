#!/usr/bin/env bash
# Decide how the action sets up the notebooks' environment, before any Python is installed
# (so: bash, not Python). Reads the action's inputs from INPUT_* variables, checks them, and
# writes the step outputs the later steps' `if:` and `with:` use:
#   setup             python | conda | none ('auto' resolved: conda when the environment file exists)
#   requirements      the requirements file, relative to the workspace, when it exists; else empty
#   environment-file  the conda environment file, relative to the workspace (setup: conda only)
#   pip-cache         'pip' when setup-python should cache pip's downloads; else empty
#   uv-cache-dir      where uv keeps its cache when the action caches it; else empty
#   cache-key         a key for the dependency caches: the files that decide their content, hashed
# A bad input is reported as an ::error annotation and exit code 1.
set -euo pipefail

fail() {  # an ::error annotation; the message is escaped as workflow-command data
  local message=${1//%/%25}
  message=${message//$'\r'/%0D}
  echo "::error title=notebook-ci invalid input::${message//$'\n'/%0A}"
  exit 1
}

file_hash() {  # a short hash of the given files' contents (and of nothing, when none exist)
  local sum=sha256sum
  command -v sha256sum >/dev/null 2>&1 || sum="shasum -a 256"
  cat -- "$@" 2>/dev/null | $sum | cut -c1-20
}

workdir=${INPUT_WORKING_DIRECTORY:-.}
[ -d "$workdir" ] || fail "working-directory '$workdir' does not exist in the workspace"
workdir=${workdir%/}

in_workdir() {  # a path input, relative to the working directory; empty stays empty (none)
  case $1 in
    "") echo "" ;;
    /*) echo "$1" ;;
    *) local path="$workdir/$1"; echo "${path#./}" ;;
  esac
}
requirements=$(in_workdir "${INPUT_REQUIREMENTS-requirements.txt}")
environment_file=$(in_workdir "${INPUT_ENVIRONMENT_FILE-environment.yml}")

setup=${INPUT_SETUP:-auto}
if [ "$setup" = auto ]; then
  if [ -n "$environment_file" ] && [ -f "$environment_file" ]; then setup=conda; else setup=python; fi
fi
case $setup in
  python | conda | none) ;;
  *) fail "setup must be auto, python, conda or none, not '$setup'" ;;
esac
installer=${INPUT_INSTALLER:-uv}
case $installer in
  uv | pip) ;;
  *) fail "installer must be uv or pip, not '$installer'" ;;
esac
cache=${INPUT_CACHE:-true}
case $cache in
  true | false) ;;
  *) fail "cache must be true or false, not '$cache'" ;;
esac
if [ "$setup" = conda ] && { [ -z "$environment_file" ] || [ ! -f "$environment_file" ]; }; then
  fail "setup: conda needs an environment file, and '$environment_file' does not exist (set environment-file)"
fi
[ -n "$requirements" ] && [ -f "$requirements" ] || requirements=""
[ "$setup" = conda ] || environment_file=""

pip_cache=""
uv_cache_dir=""
if [ "$cache" = true ]; then
  # setup-python's pip cache fails the job when it finds no dependency file, so only with one.
  if [ "$setup" = python ] && [ "$installer" = pip ] && [ -n "$requirements" ]; then pip_cache=pip; fi
  if [ "$installer" = uv ]; then uv_cache_dir="${RUNNER_TEMP:?}/nbci-uv-cache"; fi
fi
key_files=("${GITHUB_ACTION_PATH:?}/pyproject.toml")
[ -z "$requirements" ] || key_files+=("$requirements")
[ -z "$environment_file" ] || key_files+=("$environment_file")

{
  echo "setup=$setup"
  echo "requirements=$requirements"
  echo "environment-file=$environment_file"
  echo "pip-cache=$pip_cache"
  echo "uv-cache-dir=$uv_cache_dir"
  echo "cache-key=$(file_hash "${key_files[@]}")"
} >> "${GITHUB_OUTPUT:?}"
echo "notebook-ci: setup=$setup installer=$installer requirements=${requirements:-none} cache=$cache"
