"""Per-notebook and per-run results, and ``results.json`` (a public, versioned schema).

Cells are counted two ways: ``cell_index`` is 0-based over all cells (``nb.cells[i]``); reports name a
cell as Jupyter users see it, ``cell 39 (code cell 18)``: 1-based over all cells, then 1-based over
the code cells, which is the ``In [18]`` of a fresh top-to-bottom run.

What a notebook controls is stored bounded: an error's ``evalue`` keeps its first
``MESSAGE_CHARS`` characters, a traceback its last ``TRACEBACK_CHARS`` (each line at most
``MESSAGE_CHARS``), the kernel process's own output its first ``KERNEL_OUTPUT_CHARS``; a marker
says what was cut.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from nbci.text import clip, escape_surrogates

SCHEMA_VERSION = 1
MESSAGE_CHARS = 10_000
TRACEBACK_CHARS = 100_000
KERNEL_OUTPUT_CHARS = 64 * 1024

PASSED = "passed"
FLAKY = "flaky"  # passed on a retry after a transient failure
FAILED = "failed"  # a cell raised
TIMEOUT = "timeout"  # a cell exceeded --timeout
NOTEBOOK_TIMEOUT = "notebook-timeout"  # the whole notebook exceeded --notebook-timeout
CRASHED = "crashed"  # the kernel died (signal, exit, memory limit)
STARTUP_FAILED = "startup-failed"  # the kernel is missing or could not start
INVALID = "invalid"  # not a readable notebook
CANCELLED = "cancelled"  # the run was interrupted (SIGINT/SIGTERM) while this notebook ran
CACHED = "cached"  # not run: the execution cache held a passed result for exactly this notebook
SKIPPED = "skipped"  # not run: the settings file says why (skip: "needs a GPU")
ERROR = "error"  # nbci itself failed while handling this notebook, or before it finished (a bug in nbci)
CHANGED = "changed"  # ran without errors, but outputs differ from the committed ones (--check-outputs)

STATUSES = (PASSED, CACHED, FLAKY, SKIPPED, FAILED, TIMEOUT, NOTEBOOK_TIMEOUT, CRASHED, STARTUP_FAILED, INVALID,
            CANCELLED, ERROR, CHANGED)
OK_STATUSES = (PASSED, CACHED, FLAKY, SKIPPED)  # skipped counts as neither passed nor failed
NO_CODE = "no code cells ran"  # the reports' note on a notebook that passed without running any


@dataclass
class CellError:
    """What went wrong, and where: ``cell_index`` is 0-based in the notebook's ``cells``."""

    ename: str
    evalue: str
    cell_index: Optional[int] = None
    traceback: List[str] = field(default_factory=list)
    code_cell: Optional[int] = None  # 1-based among the code cells: "code cell 3" is Jupyter's In [3] in a fresh run
    source: Optional[str] = None  # the failing cell's source (first MESSAGE_CHARS characters)
    line: Optional[int] = None  # 1-based line in the notebook's own file (.ipynb JSON, or a text notebook's line)

    @property
    def message(self) -> str:
        """``ename: evalue``, or the ename alone when there is no value."""
        return f"{self.ename}: {self.evalue}" if self.evalue else self.ename

    @property
    def cell_name(self) -> Optional[str]:
        """The cell as people name it (``cell_label``), or None when none ran."""
        return None if self.cell_index is None else cell_label(self.cell_index, self.code_cell)

    def __post_init__(self) -> None:
        self.ename = clip(self.ename, 200)
        self.evalue = clip(self.evalue, MESSAGE_CHARS)
        self.traceback = last_chars([clip(line, MESSAGE_CHARS) for line in self.traceback], TRACEBACK_CHARS)
        self.source = clip(self.source, MESSAGE_CHARS) if self.source is not None else None


def cell_label(cell_index: int, code_cell: Optional[int]) -> str:
    """A cell as people name it: ``cell 39 (code cell 18)``, 1-based; ``cell 3`` when it is also code cell 3."""
    code = f" (code cell {code_cell})" if code_cell and code_cell != cell_index + 1 else ""
    return f"cell {cell_index + 1}{code}"


def last_chars(lines: List[str], limit: int) -> List[str]:
    """The last lines of ``lines`` that fit in ``limit`` characters, with a marker for the rest."""
    kept: List[str] = []
    used = 0
    for line in reversed(lines):
        used += len(line) + 1
        if used > limit:
            return [f"[{len(lines) - len(kept)} earlier traceback lines cut]"] + kept[::-1]
        kept.append(line)
    return kept[::-1]


@dataclass
class OutputDifference:
    """One output of one cell that differs from the committed notebook; texts masked and bounded."""

    cell_index: int  # 0-based in the notebook's cells
    cell: str  # as people name it: "cell 5 (code cell 3)"
    output: str  # which output: "stdout", "stderr", "text/plain", "error", "image/png", ...
    kind: str  # "changed", "missing" (committed, not produced now) or "extra" (produced now only)
    expected: str = ""  # the committed output's text, masked ("" when missing or an image)
    actual: str = ""  # the fresh output's text, masked
    line: Optional[int] = None  # 1-based line of the cell in the notebook's own file, when known


@dataclass
class OutputCheck:
    """How a notebook's fresh outputs compared with its committed ones (``--check-outputs``)."""

    mode: str  # "warn" (a change does not fail the run) or "fail"
    compared: int = 0  # code cells compared
    differences: List[OutputDifference] = field(default_factory=list)
    note: Optional[str] = None  # e.g. "nothing to compare": the notebook has no committed outputs

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> "OutputCheck":
        fields = dict(data)
        differences = [OutputDifference(**d) for d in fields.pop("differences", [])]
        return cls(differences=differences, **fields)


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
    warnings: List[str] = field(default_factory=list)  # what nbci repaired or could not do, one line each
    kernel_output: str = ""  # what the kernel process itself wrote to stdout/stderr (bounded)
    stopped_at: Optional[int] = None  # the cell whose clean SystemExit ended the notebook early
    cached_from: Optional[Dict[str, Any]] = None  # for a cached result: when and where it ran
    skip_reason: Optional[str] = None  # for a skipped notebook: the settings file's reason
    parameters: Optional[Dict[str, Any]] = None  # the parameters injected, when any
    output_check: Optional[OutputCheck] = None  # with --check-outputs: how its outputs compared
    cells_run: Optional[int] = None  # code cells its kernel ran (empty and frozen ones are not); None: not run
    masked: int = 0  # secret values replaced by *** in its executed copy and this result (nbci.masking)
    coverage: Optional[Dict[str, Any]] = None  # with --coverage: state, note, lines run per file (nbci.code_coverage)
    coverage_data: Optional[Dict[str, Any]] = None  # with --coverage: the lines it ran; not in results.json

    @property
    def ok(self) -> bool:
        """Passed, cached, flaky or skipped; or changed where ``--check-outputs warn`` only warns."""
        if self.status == CHANGED:
            return self.output_check is not None and self.output_check.mode == "warn"
        return self.status in OK_STATUSES

    @property
    def location(self) -> str:
        """``a.ipynb:41``: the path, and the failing line in the notebook's file when known."""
        return f"{self.path}:{self.error.line}" if self.error and self.error.line else self.path

    @property
    def ran_no_code(self) -> bool:
        """Passed without its kernel running a code cell: it has none, or only empty or frozen ones."""
        return self.status == PASSED and self.cells_run == 0

    def to_json(self) -> Dict[str, Any]:
        return asdict(self)

    def public_json(self) -> Dict[str, Any]:
        """``to_json`` without what only nbci itself reads back (the lines behind ``coverage``)."""
        data = self.to_json()
        data.pop("coverage_data", None)
        return data

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> "NotebookResult":
        fields = dict(data)
        error = fields.pop("error", None)
        check = fields.pop("output_check", None)
        known = {k: v for k, v in fields.items() if k in cls.__dataclass_fields__}
        return cls(error=CellError(**error) if error else None,
                   output_check=OutputCheck.from_json(check) if check else None, **known)


@dataclass
class RunResult:
    """Every notebook's result, in discovery order, plus the run's wall time."""

    notebooks: List[NotebookResult]
    duration: float = 0.0
    cancelled: bool = False
    shard: Optional[str] = None  # "I/N" when this run was one shard of a split
    engine_peak_rss: Optional[int] = None  # bytes, nbci's own peak resident memory
    engine_cpu: Optional[float] = None  # CPU seconds of the coordinating nbci process (kernels excluded)
    helpers_cpu: Optional[float] = None  # CPU seconds of nbci's helper processes (kernels excluded), if any
    signal: Optional[int] = None  # the signal (SIGINT, SIGTERM) that cancelled the run, if one did
    problems: List[str] = field(default_factory=list)  # what nbci itself could not do, one line each
    coverage: Optional[Dict[str, Any]] = None  # with --coverage: the combined total (nbci.code_coverage.Total)

    @property
    def ok(self) -> bool:
        """Every notebook ok, coverage not below its threshold, and nbci itself neither cancelled nor failed."""
        return not self.cancelled and not self.problems and all(nb.ok for nb in self.notebooks) \
            and (self.coverage or {}).get("ok", True)

    @property
    def failures(self) -> List[NotebookResult]:
        return [nb for nb in self.notebooks if not nb.ok]

    def summary(self) -> Dict[str, Any]:
        counts = {status: 0 for status in STATUSES}
        for nb in self.notebooks:
            counts[nb.status] += 1
        summary = {
            "total": len(self.notebooks),
            "passed": counts[PASSED] + counts[CACHED] + counts[FLAKY],
            "failed": len(self.failures),
            "flaky": counts[FLAKY],
            "cached": counts[CACHED],
            "skipped": counts[SKIPPED],
            "changed": counts[CHANGED],
            "statuses": {status: n for status, n in counts.items() if n},
            "duration": round(self.duration, 3),
            "engine_peak_rss": self.engine_peak_rss,
            "engine_cpu": None if self.engine_cpu is None else round(self.engine_cpu, 3),
            "helpers_cpu": None if self.helpers_cpu is None else round(self.helpers_cpu, 3),
            "cancelled": self.cancelled,
            "problems": list(self.problems),
            "ok": self.ok,
        }
        if self.shard:
            summary["shard"] = self.shard
        if self.coverage is not None:
            summary["coverage"] = self.coverage
        return summary

    def to_json(self) -> Dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "notebooks": [nb.public_json() for nb in self.notebooks],
            "summary": self.summary(),
        }


def results_json(run: RunResult) -> str:
    """The text of ``results.json``."""
    return escape_surrogates(json.dumps(run.to_json(), indent=2, ensure_ascii=False)) + "\n"


def read_results(path: Path) -> RunResult:
    """Read a ``results.json`` written by any nbci of the same schema version."""
    data = json.loads(path.read_text(encoding="utf-8"))
    notebooks = [NotebookResult.from_json(nb) for nb in data.get("notebooks", [])]
    summary = data.get("summary", {})
    return RunResult(notebooks, duration=summary.get("duration", 0.0), cancelled=summary.get("cancelled", False),
                     shard=summary.get("shard"), problems=list(summary.get("problems", [])))
