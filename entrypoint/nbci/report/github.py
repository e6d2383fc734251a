"""GitHub Actions: step outputs, a job summary, error annotations on the failing lines, log groups.

Only active when ``GITHUB_ACTIONS=true`` (or ``--github``). Everything goes through the runner's
documented channels: workflow commands on stdout, ``$GITHUB_OUTPUT`` and ``$GITHUB_STEP_SUMMARY``.

- A log group per notebook as it finishes, with its streamed output, tracebacks and whatever its
  kernel process printed (bounded), all inert: see ``workflow_commands.CommandLog``.
- One ``::error`` annotation per notebook that did not pass, pinned to the ``.ipynb`` file and
  the JSON line of the failing source line (at most ``MAX_ERROR_ANNOTATIONS``: GitHub shows no
  more per step; one ``::notice`` counts the rest).
- Outputs ``total``, ``passed``, ``failed``, ``failed-notebooks`` (JSON list of paths relative to
  the working directory), ``results`` and ``output-dir`` (absolute paths), ``ok`` (``true`` when
  every notebook passed and nbci itself failed nowhere) and ``problems`` (JSON list of what nbci
  itself could not do).
- Per notebook whose outputs changed (``--check-outputs``), a ``::warning`` (warn) or ``::error``
  (fail) annotation on the JSON line of its first changed cell, with that output's diff; the same
  limits apply to each level.
- A summary table and, per failure, the failing cell's source and the traceback's tail; per
  notebook whose outputs changed, the diff of its first changed output in a code fence; kept
  under GitHub's 1 MiB cap for one step's summary. Text from a notebook (paths, messages, sources,
  tracebacks) appears only inside code fences or code spans, or escaped on one line of an HTML
  block (which Markdown leaves alone): it can never add a heading, a link, an image or markup.
"""

from __future__ import annotations

import html
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Tuple

from nbformat import NotebookNode

from nbci.config import Config
from nbci.report import (Reporter, changed_count, changed_note, changes, diff_lines, difference_title, failing_source,
                         masked_note, not_run_note, printable, problems_headline, tail)
from nbci.report import workflow_commands as wc
from nbci.report.workflow_commands import CommandLog
from nbci.text import clip as _clip, counted
from nbci.code_coverage import closing_line
from nbci.results import NO_CODE, NotebookResult, RunResult

MAX_ERROR_ANNOTATIONS = 10
SUMMARY_LIMIT = 2**20  # bytes: GitHub refuses a larger summary for one step
SUMMARY_RESERVE = 2048  # bytes kept free for the truncation marker
LOG_LINES = 300  # per notebook log group
LOG_LINE_CHARS = 2000
SOURCE_LINES = 60
TRACEBACK_LINES = 30
MESSAGE_CHARS = 4000
PROBLEMS_SHOWN = 20  # of nbci's own problems, in the summary and the annotation
DIFF_LINES = 30  # of a changed output's diff, in the summary
ANNOTATION_DIFF_LINES = 12  # of a changed output's diff, in its annotation

STATUS_ICONS = {
    "passed": "✅", "cached": "♻️", "flaky": "🔁", "skipped": "⏭️", "failed": "❌", "timeout": "⏱️", "notebook-timeout": "⏱️",
    "crashed": "💥", "startup-failed": "🚫", "invalid": "⚠️", "cancelled": "⏹️", "error": "🛑", "changed": "📝",
}
STATUS_TITLES = {
    "failed": "failed", "timeout": "timed out", "notebook-timeout": "timed out",
    "crashed": "crashed (the kernel died)", "startup-failed": "could not start its kernel",
    "invalid": "is not a readable notebook", "cancelled": "was cancelled",
    "error": "could not be handled: nbci itself failed", "changed": "changed its outputs",
}
ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


class GitHubReporter(Reporter):
    """Report a run to GitHub Actions; ``environ`` supplies ``GITHUB_OUTPUT`` and friends.

    A missing ``GITHUB_OUTPUT`` or ``GITHUB_STEP_SUMMARY`` skips that channel; annotations and
    groups go to ``log`` (the job log on stdout by default), one whole block per write.
    """

    name = "the GitHub report (annotations, outputs, summary)"

    def __init__(self, environ: Mapping[str, str], log: Optional[CommandLog] = None) -> None:
        self.output_file = environ.get("GITHUB_OUTPUT") or None
        self.summary_file = environ.get("GITHUB_STEP_SUMMARY") or None
        workspace = environ.get("GITHUB_WORKSPACE")
        self.workspace = Path(workspace) if workspace else None
        self.log = log or CommandLog(sys.stdout, github=True)
        self._sources: Dict[str, str] = {}  # the failing cell's source, by notebook path

    def notebook_finished(self, result: NotebookResult, log: str) -> None:
        source = failing_source(result)
        if source is not None:
            self._sources[result.path] = source
        title = f"{STATUS_ICONS.get(result.status, '')} {result.status} {result.path} ({result.duration:.1f} s)"
        self.log.group(title.strip(), log)

    def run_finished(self, run: RunResult, config: Config) -> None:
        self.log.commands(self.annotations(run, config))
        if self.output_file:
            wc.write_outputs(self.output_file, step_outputs(run, config))
        room = SUMMARY_LIMIT - _size(self.summary_file) if self.summary_file else 0
        if self.summary_file and room > SUMMARY_RESERVE:
            wc.append_summary(self.summary_file, summary(run, self._sources, room))

    def annotations(self, run: RunResult, config: Config) -> List[str]:
        """One ``::error`` for nbci's own problems, one per failure for the first failures, then one
        ``::notice`` for the rest."""
        failures = run.failures
        lines = [wc.annotation("error", problems_text(run), title=problems_headline(run))] if run.problems else []
        lines += [self.error_annotation(result, config) for result in failures[:MAX_ERROR_ANNOTATIONS]]
        lines += [wc.annotation("warning", f"{result.path}: {warning}", file=repo_path(config.root / result.path,
                                self.workspace), title="nbci") for result in run.notebooks for warning in result.warnings]
        changed = [result for result in run.notebooks if result.ok and changes(result)]
        lines += [self.changed_annotation(result, config) for result in changed[:MAX_ERROR_ANNOTATIONS]]
        rest = len(failures) - MAX_ERROR_ANNOTATIONS
        if rest > 0:
            lines.append(wc.annotation(
                "notice", f"{rest} more notebooks did not pass; the job summary lists them all.",
                title=f"nbci: {rest} more failures",
            ))
        rest = len(changed) - MAX_ERROR_ANNOTATIONS
        if rest > 0:
            lines.append(wc.annotation("notice", f"{rest} more notebooks changed their outputs; the job summary "
                                       "lists them all.", title=f"nbci: {rest} more changed outputs"))
        return lines

    def changed_annotation(self, result: NotebookResult, config: Config, level: str = "warning") -> str:
        """A ``level`` annotation on the line of the first changed cell, with that output's diff."""
        first = changes(result)[0]
        diff = "\n".join(diff_lines(first, ANNOTATION_DIFF_LINES, LOG_LINE_CHARS))
        message = _clip(f"{difference_title(first)} (- committed, + fresh)\n{diff}".rstrip("\n"), MESSAGE_CHARS)
        return wc.annotation(level, message, file=repo_path(config.root / result.path, self.workspace),
                             line=first.line, title=f"{result.path}: {changed_note(result)}")

    def error_annotation(self, result: NotebookResult, config: Config) -> str:
        if result.error is None and changes(result):
            return self.changed_annotation(result, config, "error")
        source = config.root / result.path
        line = result.error.line if result.error else None
        where = f" at {result.error.cell_name}" if result.error and result.error.cell_name else ""
        title = f"{result.path} {STATUS_TITLES.get(result.status, result.status)}{where}"
        return wc.annotation("error", failure_message(result), file=repo_path(source, self.workspace),
                             line=line, title=title)


def step_outputs(run: RunResult, config: Config) -> List[Tuple[str, str]]:
    """The action's outputs, in the order the action documents them."""
    summary = run.summary()
    coverage = [] if run.coverage is None else [("coverage", f"{run.coverage['percent']:.2f}")]  # with --coverage
    return [
        ("total", str(summary["total"])),
        ("passed", str(summary["passed"])),
        ("failed", str(summary["failed"])),
        ("failed-notebooks", json.dumps([nb.path for nb in run.failures])),
        ("results", str(config.output_dir / "results.json")),
        ("output-dir", str(config.output_dir)),
        ("ok", json.dumps(run.ok)),
        ("problems", json.dumps(run.problems)),
    ] + coverage


def failure_message(result: NotebookResult) -> str:
    error = result.error
    if error is None:
        return f"{result.path}: {result.status}"
    if result.status == "invalid":
        return _clip(error.evalue or error.ename, MESSAGE_CHARS)
    return _clip(error.message, MESSAGE_CHARS)


def problems_text(run: RunResult) -> str:
    """nbci's own problems, one line each, at most ``PROBLEMS_SHOWN`` of them."""
    lines = [_clip(" ".join(problem.split()), MESSAGE_CHARS) for problem in run.problems[:PROBLEMS_SHOWN]]
    rest = len(run.problems) - PROBLEMS_SHOWN
    return "\n".join(lines + ([f"... and {rest} more"] if rest > 0 else []))


def repo_path(path: Path, workspace: Optional[Path]) -> str:
    """``path`` relative to the repository root (the workspace), with ``/``; else to the cwd."""
    full = Path(os.path.abspath(path))
    for base in ([workspace] if workspace else []) + [Path.cwd()]:
        for a, b in ((full, Path(os.path.abspath(base))), (full.resolve(), base.resolve())):
            try:
                return a.relative_to(b).as_posix()
            except ValueError:
                continue
    return full.as_posix()


# --- the log group and the job summary --------------------------------------------------------


def notebook_log(result: NotebookResult, notebook: Optional[NotebookNode]) -> str:
    """A notebook's streamed output and error tracebacks, cell by cell, at most ``LOG_LINES``."""
    lines: List[str] = []
    for index, cell in enumerate(notebook.cells if notebook is not None else []):
        texts = [_output_text(out) for out in cell.get("outputs", [])]
        texts = [t for t in texts if t]
        if texts:
            lines.append(f"--- cell {index} ---")
            lines.extend(_clip(line, LOG_LINE_CHARS) for t in texts for line in t.splitlines())
    if notebook is None and result.error:
        lines.append(failure_message(result))
    if result.kernel_output:
        lines.append("--- the kernel process printed ---")
        lines.extend(_clip(line, LOG_LINE_CHARS) for line in result.kernel_output.splitlines())
    return "\n".join(tail(lines, LOG_LINES))


def _output_text(output: NotebookNode) -> str:
    if output.get("output_type") == "stream":
        text = output.get("text", "")
        return "".join(text) if isinstance(text, list) else text
    if output.get("output_type") == "error":
        return "\n".join(output.get("traceback", [])) or f"{output.get('ename')}: {output.get('evalue')}"
    return ""


@dataclass
class _Budget:
    """Markdown blocks added while they fit in ``limit`` UTF-8 bytes."""

    limit: int
    used: int = 0
    full: bool = False

    def fits(self, text: str) -> bool:
        size = len(printable(text).encode("utf-8"))
        if self.full or self.used + size > self.limit - SUMMARY_RESERVE:
            self.full = True
            return False
        self.used += size
        return True


def summary(run: RunResult, sources: Mapping[str, str], limit: int = SUMMARY_LIMIT) -> str:
    """The job summary: headline, table (failures first), failure details and changed outputs, under
    ``limit`` bytes.

    What does not fit is left out and a closing line says how much and where to find it all.
    """
    budget = _Budget(limit)
    blocks: List[str] = []
    failures = run.failures
    rows = failures + [nb for nb in run.notebooks if nb.ok]
    details = [_failure_details(result, sources.get(result.path)) for result in failures
               if result.error or not changes(result)]
    diffs = [_changed_details(result) for result in rows if changes(result)]
    for block in [_headline(run), "| Status | Notebook | Duration |\n| --- | --- | --- |\n"]:
        if budget.fits(block):
            blocks.append(block)
    shown_rows = _add(blocks, budget, [_row(result) for result in rows])
    shown = {}
    for title, section in (("Failures", details), ("Changed outputs", diffs)):
        if section and budget.fits(f"\n#### {title}\n\n"):
            blocks.append(f"\n#### {title}\n\n")
        shown[title] = _add(blocks, budget, section)
    if shown_rows < len(rows) or shown["Failures"] < len(details) or shown["Changed outputs"] < len(diffs):
        blocks.append(
            f"\n> [!WARNING]\n> Summary truncated to stay under GitHub's 1 MiB limit: "
            f"{len(rows) - shown_rows} of {len(rows)} table rows, {len(details) - shown['Failures']} of "
            f"{len(details)} failure details and {len(diffs) - shown['Changed outputs']} of {len(diffs)} changed "
            "outputs are not shown. `results.json` in the artifact has everything.\n"
        )
    return printable("".join(blocks))


def _add(blocks: List[str], budget: _Budget, candidates: List[str]) -> int:
    shown = 0
    for block in candidates:
        if not budget.fits(block):
            break
        blocks.append(block)
        shown += 1
    return shown


def _headline(run: RunResult) -> str:
    summary = run.summary()
    changed = f"; {changed_count(summary['changed'])}" if summary["changed"] else ""
    if run.problems:
        failed = f"; {summary['failed']} of {counted(summary['total'], 'notebook')} did not pass" if summary["failed"] else ""
        head = f"### ❌ {problems_headline(run)}{failed}"
    elif run.ok:
        notes = [f"{summary[key]} {key}" for key in ("cached", "skipped") if summary[key]]
        cached = f" ({', '.join(notes)})" if notes else ""
        head = f"### ✅ nbci: {counted(summary['passed'], 'notebook')} passed{cached}{changed}"  # skipped ones are neither
    else:
        head = f"### ❌ nbci: {summary['failed']} of {counted(summary['total'], 'notebook')} did not pass{changed}"
    state = ", cancelled" if run.cancelled else ""
    problems = _fence(problems_text(run), "text") if run.problems else ""
    coverage = f"{_code(closing_line(run.coverage))}\n\n" if run.coverage is not None else ""
    return f"{head} ({run.duration:.1f} s{state})\n\n{coverage}{problems}"


def _row(result: NotebookResult) -> str:
    status = f"{STATUS_ICONS.get(result.status, '')} {result.status}".strip()
    note = not_run_note(result)
    timing = f"not run: {_code(_clip(note, 200))}" if note else f"{result.duration:.1f} s"  # a skip's reason is the repository's text
    timing += f", {NO_CODE}" if result.ran_no_code else ""
    timing += f", {masked_note(result)}" if result.masked else ""
    return f"| {status} | {_code(result.path)} | {timing} |\n"


def _failure_details(result: NotebookResult, source: Optional[str]) -> str:
    error = result.error
    where = f" in {error.cell_name}" if error and error.cell_name else ""
    headline = _clip(f"{STATUS_TITLES.get(result.status, result.status)}{where}: {failure_message(result)}", 500)
    title = f"<code>{_html_line(result.location)}</code> {_html_line(headline)}"
    if not source and not (error and error.traceback):
        return f"<p>{title}</p>\n\n"  # an HTML block: Markdown would read links and emphasis in a paragraph
    parts = [f"<details><summary>{title}</summary>\n\n"]
    if source:
        parts.append(f"Source of {error.cell_name if error and error.cell_name else 'the cell'}:\n\n")
        parts.append(_fence("\n".join(tail(source.splitlines(), SOURCE_LINES)), "python"))
    if error and error.traceback:
        lines = ANSI.sub("", "\n".join(error.traceback)).splitlines()
        parts.append("Traceback (last lines):\n\n")
        parts.append(_fence("\n".join(_clip(line, LOG_LINE_CHARS) for line in tail(lines, TRACEBACK_LINES)), "text"))
    parts.append("</details>\n\n")
    return "".join(parts)


def _changed_details(result: NotebookResult) -> str:
    """A changed notebook's first changed output, as a diff in a code fence, folded under its title."""
    first = changes(result)[0]
    title = f"<code>{_html_line(result.path)}</code> {_html_line(_clip(changed_note(result), 500))}"
    diff = diff_lines(first, DIFF_LINES, LOG_LINE_CHARS)
    body = _fence("\n".join(ANSI.sub("", line) for line in diff), "diff") if diff else ""
    return (f"<details><summary>{title}</summary>\n\n<p>{_html_line(difference_title(first))} "
            f"(- committed, + fresh):</p>\n\n{body}</details>\n\n")


def _fence(text: str, language: str) -> str:
    """A fenced code block that no backtick run inside ``text`` can close early."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{language}\n{text}\n{fence}\n\n"


def _html_line(text: str) -> str:
    """Text for one line of an HTML block: whitespace collapsed (a blank line would end the block),
    HTML escaped (no tags, no entities), so Markdown never sees it as anything but text."""
    return html.escape(" ".join(text.split()), quote=True)


def _code(text: str) -> str:
    """Inline code safe inside a Markdown table cell: one line, no ``|`` ending the cell."""
    text = " ".join(text.split()).replace("|", "\\|")
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    ticks = "`" * (longest + 1)
    return f"{ticks} {text} {ticks}" if longest else f"`{text}`"


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0
