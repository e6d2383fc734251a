#!/usr/bin/env bash
# Decide how the action sets up the notebooks' environment, before any Python is installed
# (so: bash, not Python). Reads the action's inputs from INPUT_* variables, checks them, and
# writes the step outputs the later steps' `if:` and `with:` use:
#   setup             python | conda | pixi | none ('auto' resolved by action/detect.sh, in repo2docker's
#                     order, unless environment-file or requirements name a file other than the default)
#   install           setup: python: what fills the environment: requirements, uv-sync (uv.lock),
#                     project (pip install .) or none; none with other setups
#   project-dir       install uv-sync or project: the folder of the project's pyproject.toml/setup.py
#   python-version    the python-version input, else runtime.txt's (setup: auto), else 3.12
#   requirements      the requirements file, relative to the workspace, when it exists; else empty
#   environment-file  the conda environment file, relative to the workspace (setup: conda only)
#   conda-installer   miniconda | micromamba
#   env-python        setup: pixi: the pixi environment's Python; else empty
#   pixi-manifest, pixi-locked, pixi-environment
#                     setup: pixi: the manifest, whether pixi.lock is beside it, the environment's name
#   apt-file, post-build
#                     setup: auto: apt.txt (relative to the workspace) and postBuild (absolute) when
#                     the repository has them; else empty
#   pip-cache         'pip' when setup-python should cache pip's downloads; else empty
#   uv-cache-dir      where uv keeps its cache when the action caches it; else empty
#   cache-key         a key for the dependency caches: the files that decide their content, hashed
#   python-env        setup: python: the virtual environment the notebooks run in; else empty
#   python-env-python its Python executable
#   conda-env         setup: conda: the prefix of the environment the notebooks run in; else empty
#   exec-cache-dir    the execution cache's folder (execution-cache: true, mode: run, not a schedule run); else empty
#   exec-key, exec-restore-keys
#                     what the execution cache is saved under (a new entry per run and attempt, per
#                     shard), and restored from: this branch's newest entry, else the default branch's
#   env-key           with cache: true (setup: conda, or setup: python with installer: pip), the environment cache's key (after the OS, architecture and
#                     Python version): setup, installer, the dependency file's hash and the ISO week,
#                     so an unpinned requirement is re-resolved at least weekly; else empty
#   mode              run | list (list: only the engine is installed; setup is none)
#   artifact-name     the artifact-name input, with -shard-I-of-N when a shard is given
#   shard-dir         shard-I-of-N when a shard is given; else empty
#   durations-dir     the folder of earlier results.json kept in the cache (cache: true); else empty
#   durations-key     the run's durations entry: saved by the list job, restored by its shard jobs;
#                     without shards, this job's own entry (never there yet: the prefixes restore)
#   durations-branch-prefix, durations-prefix
#                     what the list job, or a run without shards, restores from: this branch's
#                     newest entry, else any
#   durations-save-key  what this job saves its durations under (list, or no shards: durations-key)
# A bad input is reported as an ::error annotation naming it, and exit code 1: every boolean is
# exactly true or false, retention-days 1-90, shards and shard counts 1-256, artifact-name without
# upload-artifact's forbidden characters, working-directory, requirements and environment-file without
# line breaks (so none reaches $GITHUB_OUTPUT), and no file or folder of the repository that the action
# reads a link out of it (action/contained.sh).
set -euo pipefail

# shellcheck source=action/contained.sh
source "$(dirname "${BASH_SOURCE[0]}")/contained.sh"
fail() { error_annotation "notebook-ci invalid input" "$1"; }

text_hash() {  # a short hash of standard input
  if command -v sha256sum >/dev/null 2>&1; then sha256sum; else shasum -a 256; fi | cut -c1-12
}

words() {  # the words of a space- or newline-separated list, sorted, one a line (globs unexpanded)
  set -f
  # shellcheck disable=SC2086  # split into words on purpose
  printf '%s\n' $1 | LC_ALL=C sort -u
  set +f
}

file_hash() {  # a short hash of the given files' contents (and of nothing, when none are given or exist)
  local sum=sha256sum
  command -v sha256sum >/dev/null 2>&1 || sum="shasum -a 256"
  { [ "$#" -eq 0 ] || cat -- "$@" 2>/dev/null; } | $sum | cut -c1-20
}

boolean() {  # an input that must be exactly true or false (GitHub passes every input as text)
  case ${2-} in
    true | false) ;;
    *) fail "$1 must be true or false, not '${2-}'" ;;
  esac
}

one_line() {  # an input that reaches $GITHUB_OUTPUT as one line: no line breaks
  case ${2-} in
    *$'\r'* | *$'\n'*) fail "$1 must be one path without line breaks, not '${2-}'" ;;
  esac
}

count() {  # a whole number from 1 to 256 (GitHub's matrix limit), checked before any arithmetic
  [[ ${2-} =~ ^[0-9]{1,3}$ ]] && [ $((10#$2)) -ge 1 ] && [ $((10#$2)) -le 256 ] ||
    fail "$1 must be a whole number from 1 to 256, not '${2-}'"
}

boolean cache "${INPUT_CACHE-true}"
[ -z "${INPUT_ALLOW_ERRORS-}" ] || boolean allow-errors "$INPUT_ALLOW_ERRORS"  # empty: the settings file's, else false
boolean fail-on-error "${INPUT_FAIL_ON_ERROR-true}"
boolean upload "${INPUT_UPLOAD-true}"
boolean html "${INPUT_HTML-true}"
boolean execution-cache "${INPUT_EXECUTION_CACHE-true}"
retention=${INPUT_RETENTION_DAYS-5}
[[ $retention =~ ^[0-9]{1,2}$ ]] && [ $((10#$retention)) -ge 1 ] && [ $((10#$retention)) -le 90 ] ||
  fail "retention-days must be a whole number of days from 1 to 90, not '$retention'"
artifact=${INPUT_ARTIFACT_NAME-executed-notebooks}
case $artifact in
  "" | *[\":\<\>\|\*\?\\/]* | *$'\r'* | *$'\n'*)
    fail "artifact-name must be non-empty without any of \" : < > | * ? \\ / or line breaks (upload-artifact refuses them), not '$artifact'" ;;
esac
[ "${#artifact}" -le 200 ] || fail "artifact-name must be at most 200 characters"

workdir=${INPUT_WORKING_DIRECTORY:-.}
one_line working-directory "$workdir"
one_line requirements "${INPUT_REQUIREMENTS-}"
one_line environment-file "${INPUT_ENVIRONMENT_FILE-}"
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
# the repository's files: none may lead out of it (an absolute path is the workflow's own choice)
contained "$workdir"
for path in "$requirements" "$environment_file"; do
  [ -z "$path" ] || [[ $path == /* ]] || contained "$path"
done

mode=${INPUT_MODE:-run}
# Text notebooks (jupytext) need the engine's text extra: installed when notebooks names such files.
text_notebooks=false
[[ ${INPUT_NOTEBOOKS-} =~ \.(py|md|Rmd|qmd)([[:space:]\"\']|$) ]] && text_notebooks=true
case $mode in
  run | list) ;;
  *) fail "mode must be run or list, not '$mode'" ;;
esac
shard=${INPUT_SHARD:-}
shard=${shard//[[:space:]]/}
shard_dir=""
if [ "$mode" = list ]; then
  [ -z "$shard" ] || fail "shard is for mode: run; mode: list computes the shards (set shards)"
  count "shards (mode: list needs it)" "${INPUT_SHARDS:-}"
  INPUT_SETUP=none  # the list job needs no environment for the notebooks
elif [ -n "$shard" ]; then
  [[ $shard =~ ^([0-9]{1,3})/([0-9]{1,3})$ ]] && [ $((10#${BASH_REMATCH[1]})) -ge 1 ] &&
    [ $((10#${BASH_REMATCH[2]})) -le 256 ] &&
    [ $((10#${BASH_REMATCH[1]})) -le $((10#${BASH_REMATCH[2]})) ] ||
    fail "shard must be I/N with 1 <= I <= N <= 256 (e.g. \${{ matrix.shard }} from mode: list), not '$shard'"
  shard_dir="shard-$((10#${BASH_REMATCH[1]}))-of-$((10#${BASH_REMATCH[2]}))"
fi

setup=${INPUT_SETUP:-auto}
# What setup: auto found (action/detect.sh), and how setup: python fills its environment:
#   requirements (the requirements file), uv-sync (uv.lock), project (pip install .), or nothing.
layout=""
deciding_file=""
install=requirements
project_dir=""
runtime=""
apt_file=""
post_build=""
pixi_manifest=""
pixi_lock=""
if [ "$setup" = auto ]; then
  if [ "${INPUT_ENVIRONMENT_FILE-environment.yml}" != environment.yml ] && [ -n "$environment_file" ] && [ -f "$environment_file" ]; then
    setup=conda layout=conda deciding_file=$environment_file  # named explicitly: it wins
  elif [ "${INPUT_REQUIREMENTS-requirements.txt}" != requirements.txt ] && [ -n "$requirements" ] && [ -f "$requirements" ]; then
    setup=python layout=requirements deciding_file=$requirements
  else
    skip=()  # an input set empty turns its layout off
    [ -n "$environment_file" ] || skip+=(conda)
    [ -n "$requirements" ] || skip+=(requirements)
    detected=$(bash "${GITHUB_ACTION_PATH:?}/action/detect.sh" "$workdir" ${skip[@]+"${skip[@]}"}) || fail "${detected#error=}"
    while IFS= read -r line; do
      case $line in
        layout=*) layout=${line#*=} ;;
        file=*) deciding_file=${line#*=} ;;
        lock=*) pixi_lock=${line#*=} ;;
        runtime=*) runtime=${line#*=} ;;
        apt=*) apt_file=${line#*=} ;;
        post-build=*) post_build=${line#*=} ;;
      esac
    done <<< "$detected"
    # postBuild runs from the working directory: its absolute path
    [ -z "$post_build" ] || post_build="$(cd -- "$(dirname -- "$post_build")" && pwd)/postBuild"
    setup=python
    case $layout in
      conda) setup=conda environment_file=$deciding_file ;;
      pixi) setup=pixi pixi_manifest=$deciding_file ;;
      uv) install=uv-sync project_dir=$(dirname -- "$deciding_file") ;;
      requirements) requirements=$deciding_file ;;
      project) install=project project_dir=$(dirname -- "$deciding_file") ;;
      none) install=none ;;
    esac
  fi
fi
case $setup in
  python | conda | pixi | none) ;;
  *) fail "setup must be auto, python, conda, pixi or none, not '$setup'" ;;
esac
[ "$setup" = python ] || install=none
conda_installer=${INPUT_CONDA_INSTALLER:-miniconda}
case $conda_installer in
  miniconda | micromamba) ;;
  *) fail "conda-installer must be miniconda or micromamba, not '$conda_installer'" ;;
esac
python_version=${INPUT_PYTHON_VERSION:-${runtime:-3.12}}
one_line python-version "$python_version"
pixi_environment=${INPUT_PIXI_ENVIRONMENT:-default}
[[ $pixi_environment =~ ^[a-z0-9-]+$ ]] ||
  fail "pixi-environment must be a pixi environment name (lowercase letters, digits, -), not '$pixi_environment'"
names() {  # extras or dependency groups: names separated by spaces, nothing that could be an option
  [[ ${2-} =~ ^[[:space:]]*([A-Za-z0-9][A-Za-z0-9._-]*[[:space:]]*)*$ ]] ||
    fail "$1 must be names separated by spaces (letters, digits, . _ -), not '${2-}'"
}
names extras "${INPUT_EXTRAS-}"
names dependency-groups "${INPUT_DEPENDENCY_GROUPS-}"
installer=${INPUT_INSTALLER:-uv}
case $installer in
  uv | pip) ;;
  *) fail "installer must be uv or pip, not '$installer'" ;;
esac
cache=${INPUT_CACHE:-true}
if [ "$setup" = conda ] && { [ -z "$environment_file" ] || [ ! -f "$environment_file" ]; }; then
  fail "setup: conda needs an environment file, and '$environment_file' does not exist (set environment-file)"
fi
[ -n "$requirements" ] && [ -f "$requirements" ] || requirements=""
[ "$install" = requirements ] || [ "$setup" = none ] || requirements=""  # none: only named, in a notice
[ "$setup" = conda ] || environment_file=""

pip_cache=""
uv_cache_dir=""
if [ "$cache" = true ]; then
  # setup-python's pip cache fails the job when it finds no dependency file, so only with one.
  if [ "$setup" = python ] && [ "$installer" = pip ] && [ -n "$requirements" ]; then pip_cache=pip; fi
  if [ "$installer" = uv ]; then uv_cache_dir="${RUNNER_TEMP:?}/nbci-uv-cache"; fi
fi
# The set of notebooks (working-directory, notebooks, exclude; order and spacing do not matter),
# hashed: what the durations and the execution cache are kept per.
selection=$(printf '%s\n' "$workdir" "$(words "${INPUT_NOTEBOOKS-}")" "$(words "${INPUT_EXCLUDE-}")" | text_hash)
durations_dir=""
durations_key=""
durations_branch_prefix=""
durations_prefix=""
durations_save_key=""
if [ "$cache" = true ]; then
  # Entries per OS and set of notebooks (working-directory, notebooks, exclude; order and spacing
  # do not matter), then per branch, then per run: the list job saves one under the run's key and
  # every shard job of the run restores exactly that one, so all compute the list job's split.
  # A run without shards only orders its notebooks by them: it restores the newest, saves its own.
  branch=${GITHUB_REF_NAME:-none}
  branch=${branch//[^A-Za-z0-9._\/-]/_}
  durations_dir="${RUNNER_TEMP:?}/nbci-durations"
  durations_prefix="nbci-durations-${RUNNER_OS:-$(uname -s)}-$selection-"
  durations_key="$durations_prefix${branch:0:200}-${GITHUB_RUN_ID:?}-list"
  if [ "$mode" = list ]; then
    durations_branch_prefix="$durations_prefix${branch:0:200}-"
    durations_save_key=$durations_key
  elif [ -z "$shard" ]; then
    durations_branch_prefix="$durations_prefix${branch:0:200}-"
    durations_key="${durations_key%-list}-${GITHUB_RUN_ATTEMPT:-1}-run"
    durations_save_key=$durations_key
  else
    durations_prefix=""
    durations_save_key="${durations_key%-list}-${GITHUB_RUN_ATTEMPT:-1}-$shard_dir"
  fi
fi
exec_cache_dir=""
exec_key=""
exec_restore_keys=""
if [ "$mode" = run ] && [ "${INPUT_EXECUTION_CACHE-true}" = true ] && [ "${GITHUB_EVENT_NAME:-}" != schedule ]; then
  # A nightly schedule run executes everything, so drift in external data and services shows.
  exec_cache_dir="${RUNNER_TEMP:?}/nbci-execution-cache"
  exec_prefix="nbci-exec-${RUNNER_OS:-$(uname -s)}-$selection${shard_dir:+-$shard_dir}-"
  branch_name=${GITHUB_REF_NAME:-none}
  default_branch=${GITHUB_DEFAULT_BRANCH:-main}
  exec_key="$exec_prefix${branch_name//[^A-Za-z0-9._\/-]/_}-${GITHUB_RUN_ID:?}-${GITHUB_RUN_ATTEMPT:-1}"
  exec_restore_keys="$exec_prefix${branch_name//[^A-Za-z0-9._\/-]/_}-"$'\n'"$exec_prefix${default_branch//[^A-Za-z0-9._\/-]/_}-"
fi
artifact_name=$artifact${shard_dir:+-$shard_dir}

python_env=""
python_env_python=""
conda_env=""
env_key=""
if [ "$mode" = run ] && [ "$setup" = python ]; then
  python_env="${RUNNER_TEMP:?}/nbci-python-env"
  python_env_python="$python_env/bin/python"
  [ "${RUNNER_OS:-}" != Windows ] || python_env_python="$python_env/Scripts/python.exe"
fi
if [ "$mode" = run ] && [ "$setup" = conda ]; then
  # micromamba keeps named environments under its root: the action names its own root
  conda_env="${RUNNER_TEMP:?}/nbci-conda-env"
  [ "$conda_installer" = miniconda ] || conda_env="${RUNNER_TEMP:?}/nbci-micromamba/envs/nbci-conda-env"
fi
env_python=""  # setup: pixi: the Python of the pixi environment (setup-pixi installs it beside the manifest)
if [ "$mode" = run ] && [ "$setup" = pixi ]; then
  env_python="$(cd -- "$(dirname -- "$pixi_manifest")" && pwd)/.pixi/envs/$pixi_environment/bin/python"
fi
# Restoring a built environment beats installing it from pip's cache (0.61x, benchmarks/install.py)
# and skips conda's solve; uv installs from its own cache as fast as an environment unpacks (1.03x).
if [ "$cache" = true ] && { [ -n "$conda_env" ] || { [ -n "$python_env" ] && [ "$installer" = pip ]; }; }; then
  dependency_files=()
  [ -z "$requirements" ] || dependency_files+=("$requirements")
  [ -z "$environment_file" ] || dependency_files+=("$environment_file")
  [ -z "$project_dir" ] || dependency_files+=("$deciding_file")
  env_key="$setup-$installer-$(file_hash "${dependency_files[@]}")-$(date -u +%G-W%V)"
fi

key_files=("${GITHUB_ACTION_PATH:?}/pyproject.toml")
[ -z "$requirements" ] || key_files+=("$requirements")
[ -z "$environment_file" ] || key_files+=("$environment_file")
[ -z "$deciding_file" ] || [ "$deciding_file" = "$requirements" ] || [ "$deciding_file" = "$environment_file" ] ||
  key_files+=("$deciding_file")

{
  echo "setup=$setup"
  echo "requirements=$requirements"
  echo "environment-file=$environment_file"
  echo "pip-cache=$pip_cache"
  echo "uv-cache-dir=$uv_cache_dir"
  echo "cache-key=$(file_hash "${key_files[@]}")"
  echo "python-env=$python_env"
  echo "python-env-python=$python_env_python"
  echo "conda-env=$conda_env"
  echo "conda-installer=$conda_installer"
  echo "python-version=$python_version"
  echo "install=$install"
  echo "project-dir=$project_dir"
  echo "env-python=$env_python"
  echo "pixi-manifest=$pixi_manifest"
  echo "pixi-locked=$([ -n "$pixi_lock" ] && echo true || echo false)"
  echo "pixi-environment=$pixi_environment"
  echo "apt-file=$apt_file"
  echo "post-build=$post_build"
  echo "env-key=$env_key"
  echo "exec-cache-dir=$exec_cache_dir"
  echo "exec-key=$exec_key"
  echo "exec-restore-keys<<NBCI_EOF"
  echo "$exec_restore_keys"
  echo "NBCI_EOF"
  echo "mode=$mode"
  echo "text-notebooks=$text_notebooks"
  echo "artifact-name=$artifact_name"
  echo "shard-dir=$shard_dir"
  echo "durations-dir=$durations_dir"
  echo "durations-key=$durations_key"
  echo "durations-branch-prefix=$durations_branch_prefix"
  echo "durations-prefix=$durations_prefix"
  echo "durations-save-key=$durations_save_key"
} >> "${GITHUB_OUTPUT:?}"
case $layout in
  "") ;;
  none) echo "notebook-ci: nothing in ${workdir} declared an environment (no binder/, environment.yml, pixi.toml, uv.lock, requirements.txt, pyproject.toml or setup.py): Python $python_version with ipykernel alone" ;;
  conda) echo "notebook-ci: setup: auto chose conda (the environment from $deciding_file)" ;;
  pixi) echo "notebook-ci: setup: auto chose pixi (the $pixi_environment environment of $deciding_file${pixi_lock:+, locked by $pixi_lock})" ;;
  uv) echo "notebook-ci: setup: auto chose uv (uv sync --locked, from $deciding_file)" ;;
  requirements) echo "notebook-ci: setup: auto chose python (the requirements in $deciding_file)" ;;
  project) echo "notebook-ci: setup: auto chose python (pip install . of the project in $deciding_file)" ;;
esac
[ -z "$runtime" ] || [ -n "${INPUT_PYTHON_VERSION:-}" ] || echo "notebook-ci: python-version $python_version from runtime.txt"
[ -z "$apt_file" ] || echo "notebook-ci: $apt_file lists Debian packages: apt-get installs them"
[ -z "$post_build" ] || echo "notebook-ci: $post_build runs after the environment is built"
echo "notebook-ci: mode=$mode${shard:+ shard=$shard} setup=$setup installer=$installer requirements=${requirements:-none} cache=$cache"
