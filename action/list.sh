#!/usr/bin/env bash
# mode: list: print the shards as a matrix and write it to the step output `matrix`.
# Runs the engine ($NBCI_ENGINE) in the working directory; `nbci list` reads its options from the
# NBCI_* variables (NBCI_SHARDS, NBCI_NOTEBOOKS, NBCI_EXCLUDE, NBCI_CHANGED_SINCE, ...) like `run`.
# With NBCI_DURATIONS (the cached folder of earlier results.json), the folder is created when the
# cache had none (the split then goes by file size) and keeps a copy of the matrix, so the entry
# the shard jobs restore is never empty.
set -euo pipefail

if [ -n "${NBCI_DURATIONS:-}" ]; then
  mkdir -p "$NBCI_DURATIONS"
fi
matrix=$("${NBCI_ENGINE:?the action sets NBCI_ENGINE}" list --shards "${NBCI_SHARDS:?mode: list needs shards}")
case $matrix in
  *$'\n'* | "") echo "::error title=notebook-ci::nbci list printed no single-line matrix"; exit 1 ;;
esac
if [ -n "${NBCI_DURATIONS:-}" ]; then
  printf '%s\n' "$matrix" > "$NBCI_DURATIONS/matrix.json"
fi
echo "matrix=$matrix" >> "${GITHUB_OUTPUT:?}"
echo "notebook-ci: $matrix"
