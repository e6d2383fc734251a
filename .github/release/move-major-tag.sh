#!/usr/bin/env bash
# move-major-tag.sh TAG REMOTE: point the major tag (v1 for v1.4.2) at TAG's commit and force-push
# that one tag to REMOTE; nothing else is pushed. Users who pin @v1 get the release from then on.
set -euo pipefail
tag=${1:?usage: move-major-tag.sh vX.Y.Z REMOTE}
remote=${2:?usage: move-major-tag.sh vX.Y.Z REMOTE}
if [[ ! $tag =~ ^v([0-9]+)\.[0-9]+\.[0-9]+$ ]]; then
  echo "::error title=release::tag '$tag' is not vX.Y.Z" >&2
  exit 1
fi
major="v${BASH_REMATCH[1]}"
commit=$(git rev-parse --verify "refs/tags/$tag^{commit}")
git tag --force "$major" "$commit"
git push --force "$remote" "refs/tags/$major:refs/tags/$major"
echo "moved $major to $tag ($commit)"
