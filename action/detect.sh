#!/usr/bin/env bash
# Find how a repository declares its notebooks' environment, in repo2docker's order, so a
# Binder-ready repository builds here as it does on mybinder: `detect.sh FOLDER [SKIP...]`, where
# SKIP names layouts not to consider (conda, requirements: their file inputs were set empty).
# Prints key=value lines (paths as FOLDER/...):
#   source      the folder searched: FOLDER/binder or FOLDER/.binder when one exists (then only it), else FOLDER
#   layout      conda | pixi | uv | requirements | project | none (the first that matches, in that order):
#                 conda         environment.yml
#                 pixi          pixi.toml, or pyproject.toml with [tool.pixi]
#                 uv            uv.lock beside pyproject.toml
#                 requirements  requirements.txt
#                 project       pyproject.toml with [project] and [build-system], or setup.py
#                 none          nothing declared an environment
#   file        the file that decided the layout (empty with none)
#   lock        pixi.lock beside the pixi manifest (layout pixi), else empty
#   runtime     the Python version runtime.txt asks for (python-X.Y), else empty
#   apt         apt.txt (Debian packages to install), else empty
#   post-build  postBuild (a script run after the environment is built), else empty
# Each of these files and folders must be a regular file or folder inside the workspace (the current
# folder), not a link out of it (action/contained.sh).
# A folder that cannot be read one way fails with exit code 1 and one line on standard output:
#   error=<what is wrong and what to do>
set -euo pipefail

folder=${1:?usage: detect.sh FOLDER [SKIP...]}
shift
skip=" $* "
folder=${folder%/}
at="$folder/"  # paths are printed relative like the folder given, without a leading ./
[ "$folder" != . ] || at=""

fail() {  # one error= line, exit code 1
  echo "error=$1"
  exit 1
}
# shellcheck source=action/contained.sh
source "$(dirname "${BASH_SOURCE[0]}")/contained.sh"

has_table() {  # whether a TOML file has a table header [NAME] or [NAME.*] at a line's start
  grep -Eq -e "^[[:space:]]*\[${2//./\\.}([].])" -- "$1" 2>/dev/null
}

contained "$folder" "${at}binder" "${at}.binder"
source=${at%/}
if [ -d "$folder/binder" ] && [ -d "$folder/.binder" ]; then
  fail "${at:-./}: both binder/ and .binder/: keep one (repo2docker reads only one of them)"
elif [ -d "$folder/binder" ]; then
  source="${at}binder"
elif [ -d "$folder/.binder" ]; then
  source="${at}.binder"
fi

[ -n "$source" ] || source=.
in="$source/"  # the prefix of the paths printed
[ "$source" != . ] || in=""
layout=none
file=""
for name in environment.yml pixi.toml pixi.lock pyproject.toml uv.lock requirements.txt setup.py runtime.txt apt.txt \
  postBuild; do
  contained "${in}$name"
done
lock=""
pyproject="${in}pyproject.toml"
if [ -f "${in}environment.yml" ] && [[ $skip != *" conda "* ]]; then
  layout=conda file="${in}environment.yml"
elif [ -f "${in}pixi.toml" ]; then
  layout=pixi file="${in}pixi.toml"
elif [ -f "$pyproject" ] && has_table "$pyproject" tool.pixi; then
  layout=pixi file=$pyproject
elif [ -f "${in}uv.lock" ] && [ -f "$pyproject" ]; then
  layout=uv file="${in}uv.lock"
elif [ -f "${in}requirements.txt" ] && [[ $skip != *" requirements "* ]]; then
  layout=requirements file="${in}requirements.txt"
elif [ -f "$pyproject" ] && has_table "$pyproject" project && has_table "$pyproject" build-system; then
  layout=project file=$pyproject
elif [ -f "${in}setup.py" ]; then
  layout=project file="${in}setup.py"
fi
[ "$layout" != pixi ] || [ ! -f "${in}pixi.lock" ] || lock="${in}pixi.lock"

runtime=""
if [ -f "${in}runtime.txt" ]; then
  line=$(head -n 1 -- "${in}runtime.txt" | tr -d '[:space:]')
  [[ $line =~ ^python-([0-9]+\.[0-9]+(\.[0-9]+)?)$ ]] ||
    fail "${in}runtime.txt must read python-X.Y (e.g. python-3.11), not '${line:0:40}'"
  runtime=${BASH_REMATCH[1]}
fi
apt=""
[ ! -f "${in}apt.txt" ] || apt="${in}apt.txt"
post_build=""
[ ! -f "${in}postBuild" ] || post_build="${in}postBuild"

printf '%s\n' "source=$source" "layout=$layout" "file=$file" "lock=$lock" "runtime=$runtime" "apt=$apt" \
  "post-build=$post_build"
