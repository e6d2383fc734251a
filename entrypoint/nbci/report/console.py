"""The terminal: a line per notebook as it finishes, heartbeats, then a summary and each failure."""

from __future__ import annotations

import sys
from typing import Optional, TextIO

from nbformat import NotebookNode

from nbci.config import Config
from nbci.report import failing_source, format_bytes, tail
from nbci.results import NotebookResult, RunResult

TRACEBACK_LINES = 40
SOURCE_LINES = 30


class ConsoleReporter:
    """Plain lines, safe for CI logs: no cursor tricks, no colour codes."""

    def __init__(self, stream: Optional[TextIO] = None) -> None:
        self.stream = stream or sys.stdout
        self._sources = {}

    def _print(self, text: str = "") -> None:
        print(text, file=self.stream, flush=True)

    def notebook_started(self, path: str) -> None:
        pass

    def heartbeat(self, path, cell_index, source_line, elapsed, rss) -> None:
        where = f"cell {cell_index}" if cell_index is not None else "starting"
        snippet = f" `{source_line[:60]}`" if source_line else ""
        self._print(f"  ... {path}: {where}{snippet}, {elapsed:.0f} s, {format_bytes(rss)}")

    def notebook_finished(self, result: NotebookResult, notebook: Optional[NotebookNode]) -> None:
        source = failing_source(result, notebook)
        if source is not None:
            self._sources[result.path] = source
        retried = f", {result.attempts} attempts" if result.attempts > 1 else ""
        self._print(f"{result.status.upper():<16} {result.path} ({result.duration:.1f} s{retried})")

    def run_finished(self, run: RunResult, config: Config) -> None:
        summary = run.summary()
        for result in run.failures:
            self._print_failure(result)
        counts = ", ".join(f"{n} {status}" for status, n in summary["statuses"].items())
        state = " (cancelled)" if run.cancelled else ""
        self._print(f"\n{summary['total']} notebooks: {counts or 'none run'} in {run.duration:.1f} s{state}")
        self._print(f"executed copies and results.json in {config.output_dir}")

    def _print_failure(self, result: NotebookResult) -> None:
        error = result.error
        self._print(f"\n{'=' * 70}\n{result.status.upper()}: {result.path}")
        if error is None:
            return
        if error.cell_index is not None:
            self._print(f"--- cell {error.cell_index} ---")
            source = self._sources.get(result.path, "")
            for line in tail(source.splitlines(), SOURCE_LINES):
                self._print(f"    {line}")
            self._print("---")
        lines = "\n".join(error.traceback).splitlines() if error.traceback else []
        for line in tail(lines, TRACEBACK_LINES):
            self._print(line)
        if not lines or error.evalue not in lines[-1]:
            self._print(f"{error.ename}: {error.evalue}")
