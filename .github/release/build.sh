#!/usr/bin/env bash
# build.sh [DIST]: build the engine's sdist and wheel into DIST (default dist/), check their
# metadata as PyPI will, then install the wheel alone into a fresh virtual environment and run the
# example notebooks with it. What the release workflow uploads to PyPI is exactly what this checked.
set -euo pipefail
cd "$(dirname "$0")/../.."
dist=$(realpath -m "${1:-dist}")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export PIP_DISABLE_PIP_VERSION_CHECK=1

python3 -m venv "$work/tools"
# build, twine and setuptools from a lock with hashes; the build uses them as they are (no isolation)
"$work/tools/bin/python" -m pip install --quiet --require-hashes -r .github/release/requirements-build.txt
rm -rf "$dist"
"$work/tools/bin/python" -m build --no-isolation --outdir "$dist" . >"$work/build.log" ||
  { cat "$work/build.log"; exit 1; }
"$work/tools/bin/python" -m twine check --strict "$dist"/*

version=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' entrypoint/nbci/__init__.py)
wheel=$(find "$dist" -name "nbci-$version-py3-none-any.whl")
sdist=$(find "$dist" -name "nbci-$version.tar.gz")
if [ -z "$wheel" ] || [ -z "$sdist" ]; then
  echo "build.sh: expected nbci-$version-py3-none-any.whl and nbci-$version.tar.gz in $dist" >&2
  ls "$dist" >&2
  exit 1
fi
for part in nbci/report/templates/nbci/index.html.j2 nbci/iopub.py; do
  "$work/tools/bin/python" -c 'import sys, zipfile; sys.exit(sys.argv[2] not in zipfile.ZipFile(sys.argv[1]).namelist())' \
    "$wheel" "$part" || { echo "build.sh: $part is missing from $wheel" >&2; exit 1; }
done

python3 -m venv "$work/wheel"
"$work/wheel/bin/python" -m pip install --quiet "$wheel" ipykernel
installed=$("$work/wheel/bin/nbci" --version)
if [ "$installed" != "nbci $version" ]; then
  echo "build.sh: the wheel's nbci says '$installed', expected 'nbci $version'" >&2
  exit 1
fi
cp -r examples "$work/examples"
(cd "$work" && "$work/wheel/bin/nbci" run examples --html --no-cache)
echo "build.sh: $(basename "$wheel") and $(basename "$sdist") built, checked, and ran the examples"
