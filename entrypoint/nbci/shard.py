"""Split notebooks into shards for parallel CI jobs, balanced by expected duration.

Every job computes the same split on its own: the split depends only on the paths, their
weights and the shard count, never on the order the paths arrive in or on the machine. Each
notebook lands in exactly one shard; shards may be empty when there are more shards than
notebooks.

The split is LPT (longest processing time first): notebooks sorted by descending weight (ties by
path) each go to the shard with the least total weight so far (ties to the lowest shard). Its
largest shard is at most 4/3 of the best possible split, and at most the ideal share
(total / N) plus the largest single weight.
"""

from __future__ import annotations

import heapq
import re
from dataclasses import dataclass
from typing import Dict, List, Mapping, Sequence

from nbci.errors import ConfigError

MAX_SHARDS = 256  # GitHub runs at most 256 jobs per matrix
SHARD_SPEC = re.compile(r"\s*(\d{1,20})\s*/\s*(\d{1,20})\s*")


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` (1-based) of ``count``."""

    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    """Parse ``"I/N"`` with ``1 <= I <= N``; ``ConfigError`` for anything else."""
    match = SHARD_SPEC.fullmatch(str(text))
    if not match:
        raise ConfigError(f"--shard {text!r} is not I/N: pass e.g. 1/4 for the first of four shards")
    index, count = int(match.group(1)), int(match.group(2))
    if count > MAX_SHARDS:
        raise ConfigError(f"--shard {text!r}: at most {MAX_SHARDS} shards (GitHub's matrix limit)")
    if count < 1 or not 1 <= index <= count:
        raise ConfigError(f"--shard {text!r}: I must be between 1 and N (N >= 1), e.g. 1/{max(count, 1)}")
    return Shard(index, count)


def split(paths: Sequence[str], weights: Mapping[str, float], count: int) -> List[List[str]]:
    """``count`` shards of ``paths`` (each sorted), balanced by ``weights`` (missing weight: 0)."""
    if not 1 <= count <= MAX_SHARDS:
        raise ConfigError(f"--shards must be between 1 and {MAX_SHARDS} (GitHub's matrix limit), not {count}")
    shards: List[List[str]] = [[] for _ in range(count)]
    loads = [(0.0, i) for i in range(count)]  # a heap of (total weight, shard index)
    for path in sorted(set(paths), key=lambda p: (-weights.get(p, 0.0), p)):
        load, i = heapq.heappop(loads)
        shards[i].append(path)
        heapq.heappush(loads, (load + weights.get(path, 0.0), i))
    return [sorted(shard) for shard in shards]


def select_shard(paths: Sequence[str], weights: Mapping[str, float], shard: Shard) -> List[str]:
    """The paths of one shard of the split of ``paths``, in sorted order."""
    return split(paths, weights, shard.count)[shard.index - 1]


def matrix(paths: Sequence[str], weights: Mapping[str, float], count: int) -> List[Dict[str, object]]:
    """The split as a GitHub Actions matrix ``include`` list: ``[{"shard": "1/N", "notebooks": [...]}, ...]``."""
    return [
        {"shard": str(Shard(i, count)), "notebooks": shard}
        for i, shard in enumerate(split(paths, weights, count), start=1)
    ]
