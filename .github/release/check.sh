#!/usr/bin/env bash
# check.sh TAG: the tag is vX.Y.Z, X.Y.Z is the engine's version (nbci/__init__.py, which
# pyproject.toml reads) and CHANGELOG.md has a section for it; print that section (the release notes).
set -euo pipefail
cd "$(dirname "$0")/../.."
tag=${1:?usage: check.sh vX.Y.Z}
if [[ ! $tag =~ ^v([0-9]+\.[0-9]+\.[0-9]+)$ ]]; then
  echo "::error title=release::tag '$tag' is not vX.Y.Z" >&2
  exit 1
fi
version=${BASH_REMATCH[1]}
engine=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' entrypoint/nbci/__init__.py)
if [ "$engine" != "$version" ]; then
  echo "::error title=release::tag $tag does not match the engine's version (nbci $engine)" >&2
  exit 1
fi
notes=$(awk -v head="## [$version]" 'index($0, head) == 1 {on = 1; next} on && /^## \[/ {exit} on {print}' CHANGELOG.md)
if [ -z "${notes//[[:space:]]/}" ]; then
  echo "::error title=release::CHANGELOG.md has no '## [$version]' section" >&2
  exit 1
fi
printf '%s\n' "$notes"
