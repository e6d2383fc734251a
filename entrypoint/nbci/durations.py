"""Expected notebook durations: from a previous ``results.json`` when known, else from file size."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Dict, Optional, Sequence

from nbci.errors import ConfigError


def previous_durations(source: Path) -> Dict[str, float]:
    """Durations by path from an earlier run's results.json, or from every results.json in a folder.

    A folder merges the results of a sharded run (one results.json per shard, as downloaded
    artifacts); it may hold none. ``ConfigError`` if a file is unreadable.
    """
    durations: Dict[str, float] = {}
    for results_file in sorted(source.rglob("results.json")) if source.is_dir() else [source]:
        durations.update(read_durations(results_file))
    return durations


def read_durations(results_file: Path) -> Dict[str, float]:
    """Durations by path from one results.json; ``ConfigError`` if it is unreadable."""
    try:
        data = json.loads(results_file.read_text(encoding="utf-8"))
        return {nb["path"]: float(nb["duration"]) for nb in data["notebooks"] if nb.get("duration")}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"--durations {results_file}: not a results.json written by nbci ({exc}); "
            "pass the results.json of an earlier run or drop the option"
        ) from None


def expected_durations(paths: Sequence[str], root: Path, results_file: Optional[Path] = None) -> Dict[str, float]:
    """A positive weight per path: seconds from ``results_file``, else size scaled to seconds.

    Unknown notebooks are estimated from their size with the median seconds-per-byte of the known
    ones (or, with none known, their size alone: only the relative order matters then).
    """
    known = previous_durations(results_file) if results_file else {}
    sizes = {path: max((root / path).stat().st_size, 1) for path in paths}
    rates = [known[p] / sizes[p] for p in paths if p in known]
    rate = statistics.median(rates) if rates else 1.0
    return {path: known[path] if path in known else sizes[path] * rate for path in paths}


def run_order_durations(paths: Sequence[str], root: Path, results_file: Optional[Path], output_dir: Path) -> Dict[str, float]:
    """``expected_durations`` for ordering a run: without ``results_file``, the results.json an earlier
    run left in ``output_dir`` (ignored when unreadable). Shards never use it: every job must agree."""
    if results_file is None and (output_dir / "results.json").is_file():
        try:
            return expected_durations(paths, root, output_dir / "results.json")
        except ConfigError:
            pass
    return expected_durations(paths, root, results_file)
