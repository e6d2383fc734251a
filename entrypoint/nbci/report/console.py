"""The terminal: a header, a line per notebook as it finishes, heartbeats, then each failure, the
counts, a closing list of what did not pass (one line each), one of what passed with changed
outputs (``--check-outputs warn``), and last, when nbci itself failed
anywhere, ``nbci failed: N internal problems`` and each problem.

Failures with the same ``ename: evalue`` are shown in full once; the others with it are folded into
one line after it. Cells are named as Jupyter users see them: ``cell 39 (code cell 18)``. A notebook
whose outputs changed shows, for its first ``DIFFS_SHOWN`` differing outputs, a unified diff of the
masked committed (``-``) and fresh (``+``) text, ``DIFF_LINES`` lines at most.

Every line goes through the run's ``CommandLog``: notebook text put on one line (paths, the
running cell's first line, error messages) has its line breaks escaped, and every line is clipped
to ``LINE_CHARS``, so nothing a notebook holds can start a log line of its own or flood the log.
"""

from __future__ import annotations

import os
import re
import sys
from typing import Dict, List, Optional


from nbci.config import Config
from nbci.report import gitlab
from nbci.report import (Reporter, changed_note, changes, diff_lines, difference_title, failing_source, format_bytes,
                         masked_note, not_run_note, problems_headline, tail)
from nbci.report.workflow_commands import CommandLog, no_command, one_line
from nbci.text import clip, counted
from nbci.code_coverage import closing_line
from nbci.results import NO_CODE, NotebookResult, RunResult

TRACEBACK_LINES = 40
SOURCE_LINES = 30
KERNEL_OUTPUT_LINES = 20
DIFFS_SHOWN = 5  # differing outputs shown per notebook
DIFF_LINES = 20  # lines of each one's diff
DIFF_CHARS = 300  # characters of a diff line
LINE_CHARS = 2000
CLOSING_CHARS = 200  # each line of the closing list
KERNEL_SOURCE_NAME = re.compile(r" \(\d+\.py, line \d+\)$")


class ConsoleReporter(Reporter):
    """Plain lines, safe for CI logs: no cursor tricks, no colour codes."""

    name = "the console report"

    def __init__(self, log: Optional[CommandLog] = None) -> None:
        self.log = gitlab.job_log(log or CommandLog(sys.stdout), os.environ)  # GitLab: sections, no escapes
        self._sources: Dict[str, str] = {}

    def _print(self, text: str = "") -> None:
        """Print lines nbci composed; each is clipped (its notebook parts were made one line)."""
        self.log.write("".join(clip(line, LINE_CHARS) + "\n" for line in text.split("\n")))

    def run_started(self, paths: List[str], config: Config) -> None:
        timeout = f"{config.timeout:g} s per cell" if config.timeout else "no cell timeout"
        jobs = min(config.jobs, len(paths)) or 1
        self._print(f"nbci: {counted(len(paths), 'notebook')}, {jobs} at a time, {timeout}, "
                    f"executed copies in {one_line(str(config.output_dir))}")

    def heartbeat(self, path, cell_index, source_line, elapsed, rss) -> None:
        where = f"cell {cell_index + 1}" if cell_index is not None else "starting"
        snippet = f" `{one_line(source_line, 60)}`" if source_line else ""
        self._print(f"  ... {one_line(path)}: {where}{snippet}, {elapsed:.0f} s, {format_bytes(rss)}")

    def notebook_finished(self, result: NotebookResult, log: str) -> None:
        source = failing_source(result)
        if source is not None:
            self._sources[result.path] = source
        retried = f", {result.attempts} attempts" if result.attempts > 1 else ""
        timing = one_line(not_run_note(result), CLOSING_CHARS) or f"{result.duration:.1f} s{retried}"  # the repository's text
        timing += f", {NO_CODE}" if result.ran_no_code else ""
        timing += f", {masked_note(result)}" if result.masked else ""
        self._print(f"{result.status.upper():<16} {one_line(result.path)} ({timing})")
        for warning in result.warnings:
            self._print(f"  warning: {one_line(warning)}")
        if result.output_check and result.output_check.note:
            self._print(f"  outputs: {one_line(result.output_check.note, CLOSING_CHARS)}")

    def run_finished(self, run: RunResult, config: Config) -> None:
        summary = run.summary()
        for group in fold(run.failures):
            self._print_failure(group[0])
            if len(group) > 1:
                others = ", ".join(one_line(result.path) for result in group[1:])
                self._print(f"\nthe same {one_line(group[0].error.ename)} in {len(group) - 1} more notebooks: {others}")
        changed = [result for result in run.notebooks if result.ok and changes(result)]
        for result in changed:
            self._print_failure(result)
        counts = ", ".join(f"{n} {status}" for status, n in summary["statuses"].items())
        state = " (cancelled)" if run.cancelled else ""
        self._print(f"\n{counted(summary['total'], 'notebook')}: {counts or 'none run'} in {run.duration:.1f} s{state}")
        if run.failures:
            self._print("did not pass:")
            for result in run.failures:
                self._print("  " + one_line(failure_line(result), CLOSING_CHARS))
        if changed:
            self._print("changed outputs:")
            for result in changed:
                self._print("  " + one_line(failure_line(result), CLOSING_CHARS))
        self._print(f"executed copies and results.json in {one_line(str(config.output_dir))}")
        if config.html:
            self._print(f"HTML report: {one_line(str(config.output_dir / 'index.html'))}")
        if run.coverage is not None:
            reports = ", ".join(run.coverage.get("reports", {}).values())
            self._print(f"{closing_line(run.coverage)}; reports: {reports}")
        if run.problems:
            self._print(f"{problems_headline(run)}:")
            for problem in run.problems:
                self._print("  " + one_line(problem, CLOSING_CHARS))

    def _print_failure(self, result: NotebookResult) -> None:
        self._print(f"\n{'=' * 70}")
        with gitlab.section(self.log, clip(f"{result.status.upper()}: {one_line(result.path)}", LINE_CHARS)):
            self._print_details(result)

    def _print_details(self, result: NotebookResult) -> None:
        error = result.error
        if error is not None:
            if error.cell_name:
                self._print(f"--- {error.cell_name} ---")
                source = self._sources.get(result.path, "")
                self._print_lines(source, SOURCE_LINES, indent="    ")
                self._print("---")
            lines = "\n".join(error.traceback).splitlines() if error.traceback else []
            self._print_lines("\n".join(lines), TRACEBACK_LINES)
            if not shows_error(lines, error.ename, error.evalue):
                self._print(one_line(f"{error.ename}: {error.evalue}"))
        if result.kernel_output:
            self._print("--- the kernel process printed ---")
            self._print_lines(result.kernel_output, KERNEL_OUTPUT_LINES)
        self._print_changes(result)

    def _print_changes(self, result: NotebookResult) -> None:
        """The first ``DIFFS_SHOWN`` differing outputs, each a bounded diff whose lines hold no command."""
        found = changes(result)
        for difference in found[:DIFFS_SHOWN]:
            self._print(f"--- {one_line(difference_title(difference), CLOSING_CHARS)} (- committed, + fresh) ---")
            for line in diff_lines(difference, DIFF_LINES, DIFF_CHARS):
                self._print(f"    {no_command(line)}")
        if len(found) > DIFFS_SHOWN:
            self._print(f"... {len(found) - DIFFS_SHOWN} more differing outputs: see results.json")

    def _print_lines(self, text: str, limit: int, indent: str = "") -> None:
        """The last ``limit`` lines of notebook text, each its own clipped log line."""
        for line in tail(text.splitlines(), limit):
            self._print(f"{indent}{clip(line, LINE_CHARS)}")


def fold(failures: List[NotebookResult]) -> List[List[NotebookResult]]:
    """Failures grouped by identical ``ename: evalue``, in order of first appearance."""
    groups: Dict[object, List[NotebookResult]] = {}
    for result in failures:
        error = result.error
        key = (result.status, error.ename, error.evalue) if error else (result.status, id(result))
        groups.setdefault(key, []).append(result)
    return list(groups.values())


def shows_error(lines: List[str], ename: str, evalue: str) -> bool:
    """Whether the traceback's last lines already state the error (a SyntaxError's names its own line)."""
    return any(evalue in line or line.startswith(f"{ename}:") for line in lines[-3:])


def failure_line(result: NotebookResult) -> str:
    """``FAILED  a.ipynb:41  cell 3 (code cell 2)  ZeroDivisionError: division by zero`` (``:41``, the
    failing line in the notebook's file, when known)."""
    error = result.error
    parts = [f"{result.status.upper():<16}", result.location]
    if error is not None:
        if error.cell_name:
            parts.append(error.cell_name)
        evalue = KERNEL_SOURCE_NAME.sub("", error.evalue)  # "(3105.py, line 1)": the kernel's temporary file
        parts.append(f"{error.ename}: {evalue}" if evalue else error.ename)
    elif changes(result):
        parts.append(changed_note(result))
    return "  ".join(parts)
