"""Per-notebook and per-run results, and ``results.json`` (a public, versioned schema)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

SCHEMA_VERSION = 1

PASSED = "passed"
FLAKY = "flaky"  # passed on a retry after a transient failure
FAILED = "failed"  # a cell raised
TIMEOUT = "timeout"  # a cell exceeded --timeout
NOTEBOOK_TIMEOUT = "notebook-timeout"  # the whole notebook exceeded --notebook-timeout
CRASHED = "crashed"  # the kernel died (signal, exit, memory limit)
STARTUP_FAILED = "startup-failed"  # the kernel is missing or could not start
INVALID = "invalid"  # not a readable notebook
CANCELLED = "cancelled"  # the run was interrupted (SIGINT/SIGTERM) while this notebook ran

STATUSES = (PASSED, FLAKY, FAILED, TIMEOUT, NOTEBOOK_TIMEOUT, CRASHED, STARTUP_FAILED, INVALID, CANCELLED)
OK_STATUSES = (PASSED, FLAKY)


@dataclass
class CellError:
    """What went wrong, and where: ``cell_index`` is 0-based in the notebook's ``cells``."""

    ename: str
    evalue: str
    cell_index: Optional[int] = None
    traceback: List[str] = field(default_factory=list)


@dataclass
class NotebookResult:
    """The outcome of one notebook: its status, timings and where its executed copy is."""

    path: str  # relative to the run's root, with "/" separators
    status: str
    duration: float = 0.0
    output_path: Optional[str] = None
    kernel: Optional[str] = None
    error: Optional[CellError] = None
    peak_rss: Optional[int] = None  # bytes, the kernel's process tree
    attempts: int = 1

    @property
    def ok(self) -> bool:
        return self.status in OK_STATUSES

    def to_json(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> "NotebookResult":
        fields = dict(data)
        error = fields.pop("error", None)
        known = {k: v for k, v in fields.items() if k in cls.__dataclass_fields__}
        return cls(error=CellError(**error) if error else None, **known)


@dataclass
class RunResult:
    """Every notebook's result, in discovery order, plus the run's wall time."""

    notebooks: List[NotebookResult]
    duration: float = 0.0
    cancelled: bool = False
    shard: Optional[str] = None  # "I/N" when this run was one shard of a split
    engine_peak_rss: Optional[int] = None  # bytes, nbci's own peak resident memory
    signal: Optional[int] = None  # the signal (SIGINT, SIGTERM) that cancelled the run, if one did

    @property
    def ok(self) -> bool:
        return not self.cancelled and all(nb.ok for nb in self.notebooks)

    @property
    def failures(self) -> List[NotebookResult]:
        return [nb for nb in self.notebooks if not nb.ok]

    def summary(self) -> Dict[str, Any]:
        counts = {status: 0 for status in STATUSES}
        for nb in self.notebooks:
            counts[nb.status] += 1
        summary = {
            "total": len(self.notebooks),
            "passed": counts[PASSED] + counts[FLAKY],
            "failed": len(self.failures),
            "flaky": counts[FLAKY],
            "statuses": {status: n for status, n in counts.items() if n},
            "duration": round(self.duration, 3),
            "engine_peak_rss": self.engine_peak_rss,
            "cancelled": self.cancelled,
            "ok": self.ok,
        }
        if self.shard:
            summary["shard"] = self.shard
        return summary

    def to_json(self) -> Dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "notebooks": [nb.to_json() for nb in self.notebooks],
            "summary": self.summary(),
        }


def write_results(run: RunResult, path: Path) -> None:
    """Write ``results.json`` atomically, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(run.to_json(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_results(path: Path) -> RunResult:
    """Read a ``results.json`` written by any nbci of the same schema version."""
    data = json.loads(path.read_text(encoding="utf-8"))
    notebooks = [NotebookResult.from_json(nb) for nb in data.get("notebooks", [])]
    summary = data.get("summary", {})
    return RunResult(notebooks, duration=summary.get("duration", 0.0), cancelled=summary.get("cancelled", False),
                     shard=summary.get("shard"))
