#!/usr/bin/env bash
# Install the Debian/Ubuntu packages apt.txt lists (repo2docker's apt.txt): `apt.sh FILE`.
# One package a line; blank lines and # comments are skipped. Linux runners only: elsewhere, and
# for a line that is not a package name (nothing apt-get could read as an option), one ::error
# line names the file and what to do; so does a FILE that is a link out of the repository.
# Runs apt-get through sudo when not root.
set -euo pipefail

file=${1:?usage: apt.sh FILE}
# shellcheck source=action/contained.sh
source "$(dirname "${BASH_SOURCE[0]}")/contained.sh"
fail() { error_annotation "notebook-ci apt.txt" "$1"; }
contained "$file"
[ -f "$file" ] || fail "$file does not exist"

if [ "$(uname -s)" != Linux ] || ! command -v apt-get >/dev/null 2>&1; then
  fail "$file lists Debian packages, and this runner ($(uname -s)) has no apt-get: run the job on ubuntu-latest, or remove $file"
fi
packages=()
while IFS= read -r line || [ -n "$line" ]; do
  line=${line%%#*}
  line=${line//[[:space:]]/}
  [ -n "$line" ] || continue
  [[ $line =~ ^[a-z0-9][a-z0-9+.:=~-]*$ ]] ||
    fail "$file: '${line:0:60}' is not a Debian package name (one name a line, # for comments)"
  packages+=("$line")
done < "$file"
[ "${#packages[@]}" -gt 0 ] || { echo "notebook-ci: $file lists no packages"; exit 0; }
sudo=()
[ "$(id -u)" = 0 ] || sudo=(sudo --non-interactive)
echo "notebook-ci: installing ${packages[*]} from $file"
"${sudo[@]}" apt-get update --quiet
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install --yes --quiet --no-install-recommends -- "${packages[@]}"
