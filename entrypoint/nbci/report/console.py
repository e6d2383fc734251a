"""The terminal: a line per notebook as it finishes, heartbeats, then a summary and each failure.

Every line goes through the run's ``CommandLog``: notebook text put on one line (paths, the
running cell's first line, error messages) has its line breaks escaped, and every line is clipped
to ``LINE_CHARS``, so nothing a notebook holds can start a log line of its own or flood the log.
"""

from __future__ import annotations

import sys
from typing import Dict, Optional

from nbformat import NotebookNode

from nbci.config import Config
from nbci.report import cached_note, failing_source, format_bytes, tail
from nbci.report.workflow_commands import CommandLog, one_line
from nbci.text import clip
from nbci.results import NotebookResult, RunResult

TRACEBACK_LINES = 40
SOURCE_LINES = 30
KERNEL_OUTPUT_LINES = 20
LINE_CHARS = 2000


class ConsoleReporter:
    """Plain lines, safe for CI logs: no cursor tricks, no colour codes."""

    name = "the console report"

    def __init__(self, log: Optional[CommandLog] = None) -> None:
        self.log = log or CommandLog(sys.stdout)
        self._sources: Dict[str, str] = {}

    def _print(self, text: str = "") -> None:
        """Print lines nbci composed; each is clipped (its notebook parts were made one line)."""
        self.log.write("".join(clip(line, LINE_CHARS) + "\n" for line in text.split("\n")))

    def notebook_started(self, path: str) -> None:
        pass

    def heartbeat(self, path, cell_index, source_line, elapsed, rss) -> None:
        where = f"cell {cell_index}" if cell_index is not None else "starting"
        snippet = f" `{one_line(source_line, 60)}`" if source_line else ""
        self._print(f"  ... {one_line(path)}: {where}{snippet}, {elapsed:.0f} s, {format_bytes(rss)}")

    def notebook_finished(self, result: NotebookResult, notebook: Optional[NotebookNode]) -> None:
        source = failing_source(result, notebook)
        if source is not None:
            self._sources[result.path] = source
        retried = f", {result.attempts} attempts" if result.attempts > 1 else ""
        timing = cached_note(result) or f"{result.duration:.1f} s{retried}"
        self._print(f"{result.status.upper():<16} {one_line(result.path)} ({timing})")
        for warning in result.warnings:
            self._print(f"  warning: {one_line(warning)}")

    def run_finished(self, run: RunResult, config: Config) -> None:
        summary = run.summary()
        for result in run.failures:
            self._print_failure(result)
        counts = ", ".join(f"{n} {status}" for status, n in summary["statuses"].items())
        state = " (cancelled)" if run.cancelled else ""
        self._print(f"\n{summary['total']} notebooks: {counts or 'none run'} in {run.duration:.1f} s{state}")
        self._print(f"executed copies and results.json in {one_line(str(config.output_dir))}")

    def _print_failure(self, result: NotebookResult) -> None:
        error = result.error
        self._print(f"\n{'=' * 70}\n{result.status.upper()}: {one_line(result.path)}")
        if error is not None:
            if error.cell_index is not None:
                self._print(f"--- cell {error.cell_index} ---")
                source = self._sources.get(result.path, "")
                self._print_lines(source, SOURCE_LINES, indent="    ")
                self._print("---")
            lines = "\n".join(error.traceback).splitlines() if error.traceback else []
            self._print_lines("\n".join(lines), TRACEBACK_LINES)
            if not lines or error.evalue not in lines[-1]:
                self._print(one_line(f"{error.ename}: {error.evalue}"))
        if result.kernel_output:
            self._print("--- the kernel process printed ---")
            self._print_lines(result.kernel_output, KERNEL_OUTPUT_LINES)

    def _print_lines(self, text: str, limit: int, indent: str = "") -> None:
        """The last ``limit`` lines of notebook text, each its own clipped log line."""
        for line in tail(text.splitlines(), limit):
            self._print(f"{indent}{clip(line, LINE_CHARS)}")
