"""A deterministic synthetic corpus of 20 notebooks for the speed benchmark.

Four shapes, chosen to exercise different costs of running notebooks in CI:

* ``tiny_NN``     12 notebooks of 5 trivial cells: the cost is kernel startup.
* ``compute_NN``   4 notebooks of about 1.5 s of CPU each at ``scale=1`` (pure Python
  loops plus single-threaded numpy): the cost is the work itself.
* ``output_NN``    2 notebooks printing 20,000 lines and drawing 3 matplotlib figures:
  the cost is moving and storing outputs.
* ``imports_NN``   2 notebooks importing pandas and ``matplotlib.pyplot``: the cost is
  heavy imports.

Only the standard library is used, so the corpus can be written before any virtualenv
exists. Files are nbformat 4.5 JSON with cell ids and a ``python3`` kernelspec, and are
byte-identical for identical arguments.

Usage: ``python benchmarks/corpus.py OUTDIR [--scale 1.0]``
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Sequence

KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}

# Loop sizes of the compute notebooks at scale 1.0 (about 1.5 s of cell time in all on a
# 2-core x86-64 CI machine with CPython 3.11).
COMPUTE_SIZES = {"loop": 5_000_000, "words": 600_000, "array": 8_000_000, "sieve": 2_500_000}


@dataclass
class NotebookSpec:
    """One synthetic notebook: a file stem, a markdown title and code cell sources."""

    stem: str
    title: str
    sources: List[str] = field(default_factory=list)

    def to_json(self) -> Dict[str, Any]:
        """Render as an nbformat 4.5 document with stable cell ids."""
        slug = self.stem.replace("_", "-")
        cells: List[Dict[str, Any]] = [
            {"cell_type": "markdown", "id": f"{slug}-title", "metadata": {}, "source": f"# {self.title}"}
        ]
        for index, source in enumerate(self.sources):
            cells.append({
                "cell_type": "code",
                "execution_count": None,
                "id": f"{slug}-{index}",
                "metadata": {},
                "outputs": [],
                "source": source,
            })
        return {
            "cells": cells,
            "metadata": {"kernelspec": KERNELSPEC, "language_info": {"name": "python"}},
            "nbformat": 4,
            "nbformat_minor": 5,
        }


def tiny(n: int) -> NotebookSpec:
    """Five cells that each take microseconds."""
    return NotebookSpec(f"tiny_{n:02d}", f"Tiny notebook {n}", [
        f"a = {n} + 1\nb = a * 3\nb",
        "import statistics\nstatistics.mean([a, b, 7])",
        "names = ['red', 'green', 'blue']\n', '.join(sorted(names, key=len))",
        f"squares = [i * i for i in range({20 + n})]\nmax(squares)",
        "print('finished', a, b)",
    ])


def compute(n: int, scale: float) -> NotebookSpec:
    """CPU-bound cells: integer loop, dict counting, numpy sorting, a sieve."""
    size = {key: max(1, int(value * scale)) for key, value in COMPUTE_SIZES.items()}
    return NotebookSpec(f"compute_{n:02d}", f"Compute-bound notebook {n}", [
        f"import numpy as np\nrng = np.random.default_rng({1000 + n})",
        f"total = 0\nfor i in range({size['loop']}):\n    total += (i * 3 + {n}) % 11\ntotal",
        f"tally = {{}}\nfor i in range({size['words']}):\n"
        f"    word = 'w' + str(i % 997)\n    tally[word] = tally.get(word, 0) + 1\nlen(tally)",
        f"values = rng.random({size['array']})\nfor _ in range(4):\n"
        "    values = np.sort(np.cos(values) * 1000.0 % 1.0)\nfloat(values[:5].sum())",
        f"limit = {size['sieve']}\nflags = bytearray(b'\\x01') * (limit + 1)\nflags[:2] = b'\\x00\\x00'\n"
        "for p in range(2, int(limit ** 0.5) + 1):\n    if flags[p]:\n"
        "        flags[p * p::p] = bytes(len(range(p * p, limit + 1, p)))\n"
        "sum(1 for i in range(limit + 1) if flags[i])",
    ])


def output_heavy(n: int) -> NotebookSpec:
    """20,000 printed lines in two cells, then three inline figures."""
    sources = [
        "for i in range(10_000):\n    print(f'row {i:05d} checksum {i * 37 % 1009}')",
        "for i in range(10_000, 20_000):\n    print(f'row {i:05d} checksum {i * 37 % 1009}')",
        "%matplotlib inline\nimport numpy as np\nimport matplotlib.pyplot as plt",
    ]
    for k in range(3):
        sources.append(
            "fig, ax = plt.subplots(figsize=(6, 4))\nx = np.linspace(0, 12, 600)\n"
            f"ax.plot(x, np.cos(x * {k + 2 + n}))\nax.set_title('figure {k + 1}')\nplt.show()"
        )
    return NotebookSpec(f"output_{n:02d}", f"Output-heavy notebook {n}", sources)


def import_heavy(n: int) -> NotebookSpec:
    """pandas and pyplot imports, then a little pandas work."""
    return NotebookSpec(f"imports_{n:02d}", f"Import-heavy notebook {n}", [
        "import pandas as pd",
        "import matplotlib.pyplot as plt",
        f"frame = pd.DataFrame({{'x': range(200), 'g': [i % {4 + n} for i in range(200)]}})\n"
        "frame.groupby('g').x.sum()",
        "frame.describe()",
    ])


def build(scale: float = 1.0) -> List[NotebookSpec]:
    """The 20 notebooks of the corpus, in a fixed order."""
    specs = [tiny(n) for n in range(12)]
    specs += [compute(n, scale) for n in range(4)]
    specs += [output_heavy(n) for n in range(2)]
    specs += [import_heavy(n) for n in range(2)]
    return specs


def write_corpus(folder: Path, scale: float = 1.0) -> List[Path]:
    """Write the corpus into ``folder`` (created if needed) and return the files written."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for spec in build(scale):
        path = folder / f"{spec.stem}.ipynb"
        text = json.dumps(spec.to_json(), indent=1, sort_keys=True, ensure_ascii=False)
        path.write_text(text + "\n", encoding="utf-8")
        paths.append(path)
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("outdir", type=Path, help="folder to write the notebooks into")
    parser.add_argument("--scale", type=float, default=1.0, help="multiplier of the compute notebooks' work")
    args = parser.parse_args(argv)
    if args.scale <= 0:
        parser.error("--scale must be positive")
    paths = write_corpus(args.outdir, args.scale)
    print(f"wrote {len(paths)} notebooks to {args.outdir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
