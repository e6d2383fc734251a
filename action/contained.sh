# shellcheck shell=bash
# Sourced by the action's bash helpers: `error_annotation TITLE MESSAGE` writes one inert ::error line
# and exits; `contained PATH...` fails (through the caller's `fail`
# function, one line) unless each PATH that exists, or is a link, is a regular file or folder whose
# real path is inside the workspace (the current folder): the repository decides what these files
# are, and a link out of it (binder -> ~/.ssh, apt.txt -> /etc/passwd) would have the action read,
# and quote, what is not the repository's.

error_annotation() {  # error_annotation TITLE MESSAGE: one ::error line, MESSAGE escaped as workflow-command data; exit 1
  local message=${2//%/%25}
  message=${message//$'\r'/%0D}
  echo "::error title=$1::${message//$'\n'/%0A}"
  exit 1
}

contained() {
  local root path real
  root=$(pwd -P)
  for path in "$@"; do
    [ -e "$path" ] || [ -L "$path" ] || continue
    real=$(realpath -- "$path" 2>/dev/null) || real=""
    case $real in
      "$root" | "$root"/*) ;;
      *) fail "$path is a link out of the repository: replace it with the file or folder itself (the action reads nothing outside the workspace)" ;;
    esac
    [ -f "$path" ] || [ -d "$path" ] ||
      fail "$path is neither a regular file nor a folder: replace it with the file itself"
  done
}
