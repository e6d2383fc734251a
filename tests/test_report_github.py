"""The GitHub reporter: outputs, summary, annotations on the right line, log groups."""

from __future__ import annotations

import io
import json
import os
import re
import sys
from pathlib import Path
from typing import List

import nbformat
import pytest
from markdown_it import MarkdownIt
from test_workflow_commands import parse_command, parse_output_file

from nbci.config import Config
from nbci.report import github
from nbci.report.workflow_commands import CommandLog
from runner_log import live_commands
from nbci.locate import cell_source_lines, failing_cell_line, failure_line, json_error_line, json_line_of
from nbci.report.github import GitHubReporter
from nbci import results
from nbci.results import CellError, NotebookResult, RunResult

IPYTHON8_TB = [
    "\x1b[31m---------------------------------------------------------------------------\x1b[39m",
    "\x1b[31mZeroDivisionError\x1b[39m                         Traceback (most recent call last)",
    "\x1b[36mCell\x1b[39m\x1b[36m \x1b[39m\x1b[32mIn[7]\x1b[39m\x1b[32m, line 3\x1b[39m\n      1 a = 1\n----> 3 helper()",
    "\x1b[36mCell\x1b[39m\x1b[36m \x1b[39m\x1b[32mIn[2]\x1b[39m\x1b[32m, line 2\x1b[39m, in helper()\n----> 2 1 / 0",
    "\x1b[31mZeroDivisionError\x1b[39m: division by zero",
]
IPYTHON7_TB = [
    "---------------------------------------------------------------------------",
    "ZeroDivisionError                         Traceback (most recent call last)",
    "<ipython-input-3-9e1622b385b6> in <module>\n      1 a = 1\n----> 2 1 / 0\n",
    "ZeroDivisionError: division by zero",
]
SYNTAX_TB = ['  Cell In[1], line 2\n    x = (\n        ^\n', 'SyntaxError: incomplete input\n']


def notebook_text(*sources: str, indent: int = 1) -> str:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    nb.cells.insert(1, nbformat.v4.new_markdown_cell("# a heading\nwith text"))
    return nbformat.writes(nb) if indent == 1 else json.dumps(nb)


def line_holding(text: str, fragment: str) -> int:
    hits = [i for i, line in enumerate(text.splitlines(), 1) if fragment in line]
    assert len(hits) == 1, (fragment, hits)
    return hits[0]


def test_cell_source_lines_follow_the_raw_json():
    text = notebook_text("import os", "a = 1\nb = 2\nc = a / 0\nprint(c)", "")
    cells = cell_source_lines(text)
    assert [len(c) for c in cells] == [1, 2, 4, 0]
    for pieces in cells:
        for line, piece in pieces:
            assert json.dumps(piece) in text.splitlines()[line - 1]
    assert cells[2][2] == (line_holding(text, '"c = a / 0\\n"'), "c = a / 0\n")


def test_cell_source_lines_on_compact_json_and_string_sources():
    compact = json.dumps({"cells": [{"cell_type": "code", "source": "x = 1\ny = 2"}], "nbformat": 4})
    assert cell_source_lines(compact) == [[(1, "x = 1\ny = 2")]]
    with pytest.raises(ValueError):
        cell_source_lines('{"cells": [ this is not json')


@pytest.mark.parametrize("traceback, line", [(IPYTHON8_TB, 3), (IPYTHON7_TB, 2), (SYNTAX_TB, 2), (["boom"], None)])
def test_failing_cell_line_reads_the_cells_own_frame(traceback, line):
    assert failing_cell_line(traceback) == line


def test_json_line_of_maps_cell_lines_to_pieces():
    pieces = [(10, "a = 1\n"), (11, "b = '''x\ny'''\n"), (12, "c = 3")]
    assert [json_line_of(pieces, n) for n in (None, 1, 2, 3, 4, 99)] == [10, 10, 11, 11, 12, 12]


def result(path: str, status: str = "failed", cell: int = 2, traceback: List[str] = (), duration: float = 1.25):
    error = None if status == "passed" else CellError("ValueError", f"bad value in {path}", cell, list(traceback))
    return NotebookResult(path=path, status=status, duration=duration, error=error)


def make_reporter(tmp_path: Path, workspace: Path = None):
    stream = io.StringIO()
    environ = {"GITHUB_OUTPUT": str(tmp_path / "output"), "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md")}
    if workspace is not None:
        environ["GITHUB_WORKSPACE"] = str(workspace)
    return GitHubReporter(environ, CommandLog(stream)), stream


def commands(stream: io.StringIO, name: str):
    return [parse_command(line) for line in stream.getvalue().splitlines() if line.startswith(f"::{name} ")]


def test_annotation_points_at_the_failing_line_relative_to_the_repository(tmp_path: Path):
    root = tmp_path / "repo" / "docs"
    (root / "sub").mkdir(parents=True)
    text = notebook_text("import math", "a = 1\nb = 0\nc = a / b\n", "print('after')")
    failure = result("sub/calc, v2.ipynb", cell=2, traceback=["Cell In[2], line 3\n----> 3 c = a / b"])
    failure.error.line = failure_line(text, failure.error)
    assert failure.error.line == line_holding(text, '"c = a / b\\n"')
    reporter, stream = make_reporter(tmp_path, workspace=tmp_path / "repo")
    reporter.run_finished(RunResult([failure]), Config(root=root))
    [(_, props, message)] = commands(stream, "error")
    assert props["file"] == "docs/sub/calc, v2.ipynb"
    assert int(props["line"]) == failure.error.line
    assert props["title"] == "sub/calc, v2.ipynb failed at cell 3"
    assert message == "ValueError: bad value in sub/calc, v2.ipynb"


def test_failure_lines_fall_back_to_the_cell_or_the_json_error(tmp_path: Path):
    text = notebook_text("x = 1", "y = 2")
    assert failure_line(text, CellError("E", "v", 2)) == line_holding(text, '"y = 2"')  # the cell's first line
    assert failure_line(text, CellError("E", "v", 9)) is None and failure_line(text, CellError("E", "v")) is None
    assert json_error_line('{\n "cells": [\n  oops\n') == 3 and json_error_line(text) is None
    injected = CellError("E", "v", 3)  # an injected parameters cell at 1: the file's cell 2
    assert failure_line(text, injected, injected_at=1) == line_holding(text, '"y = 2"')
    assert failure_line(text, CellError("E", "v", 1), injected_at=1) is None


def test_annotations_without_a_line_name_the_file_only(tmp_path: Path):
    reporter, stream = make_reporter(tmp_path, workspace=tmp_path)
    broken = result("broken.ipynb", status="invalid", cell=None)
    broken.error.line = 3
    reporter.run_finished(RunResult([broken, result("gone.ipynb", status="crashed", cell=0)]), Config(root=tmp_path))
    broken_props, gone = [props for _, props, _ in commands(stream, "error")]
    assert broken_props["line"] == "3" and broken_props["title"] == "broken.ipynb is not a readable notebook"
    assert "line" not in gone and gone["file"] == "gone.ipynb"


def test_at_most_ten_errors_then_one_notice(tmp_path: Path):
    reporter, stream = make_reporter(tmp_path, workspace=tmp_path)
    run = RunResult([result(f"nb{i:02}.ipynb") for i in range(13)] + [result("ok.ipynb", status="passed")])
    reporter.run_finished(run, Config(root=tmp_path))
    errors, notices = commands(stream, "error"), commands(stream, "notice")
    assert [props["file"] for _, props, _ in errors] == [f"nb{i:02}.ipynb" for i in range(10)]
    assert len(notices) == 1 and notices[0][2].startswith("3 more notebooks did not pass")


def test_outputs(tmp_path: Path):
    reporter, _ = make_reporter(tmp_path)
    config = Config(root=tmp_path, output_dir=Path("out dir"))
    run = RunResult([result("a.ipynb", status="passed"), result("b c.ipynb"),
                     NotebookResult("d.ipynb", "flaky", attempts=2), result("e.ipynb", status="timeout")])
    reporter.run_finished(run, config)
    outputs = parse_output_file((tmp_path / "output").read_text(encoding="utf-8"))
    assert outputs == {
        "total": "4", "passed": "2", "failed": "2",
        "failed-notebooks": '["b c.ipynb", "e.ipynb"]',
        "results": str(tmp_path.resolve() / "out dir" / "results.json"),
        "output-dir": str(tmp_path.resolve() / "out dir"),
        "ok": "false", "problems": "[]",
    }


def test_summary_lists_failures_first_with_source_and_traceback_tail(tmp_path: Path):
    reporter, _ = make_reporter(tmp_path)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in ("a = 1", "b = 2", "raise ValueError('x')")])
    long_tb = [f"frame {i}" for i in range(100)] + ["ValueError: x"]
    failing = result("fail|`odd`.ipynb", cell=2, traceback=long_tb)
    failing.error.source = nb.cells[2].source  # what the runner records from the executed copy
    reporter.notebook_finished(failing, github.notebook_log(failing, nb))
    reporter.run_finished(RunResult([result("ok.ipynb", status="passed"), failing], duration=3.5),
                          Config(root=tmp_path))
    text = (tmp_path / "summary.md").read_text(encoding="utf-8")
    assert text.startswith("### ❌ nbci: 1 of 2 notebooks did not pass (3.5 s)\n")
    table = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    assert table == ["| Status | Notebook | Duration |", "| ❌ failed | `` fail\\|`odd`.ipynb `` | 1.2 s |",
                     "| ✅ passed | `ok.ipynb` | 1.2 s |"]
    assert "<details><summary><code>fail|`odd`.ipynb</code> failed in cell 3: ValueError: bad value" in text
    assert "```python\nraise ValueError('x')\n```" in text
    assert "frame 99\nValueError: x\n```" in text and "frame 50\n" not in text
    assert "earlier lines cut" in text


def test_a_skip_reason_is_shown_only_as_text(tmp_path: Path):
    reporter, _ = make_reporter(tmp_path)
    skipped = NotebookResult("gpu.ipynb", "skipped", skip_reason="a | b <img src=x> **bold**\n## heading")
    reporter.run_finished(RunResult([skipped, result("ok.ipynb", status="passed")]), Config(root=tmp_path))
    text = (tmp_path / "summary.md").read_text(encoding="utf-8")
    assert "| ⏭️ skipped | `gpu.ipynb` | not run: `a \\| b <img src=x> **bold** ## heading` |" in text
    assert "\n## heading" not in text


def test_summary_of_a_passing_run(tmp_path: Path):
    reporter, _ = make_reporter(tmp_path)
    reporter.run_finished(RunResult([result("ok.ipynb", status="passed")], duration=1), Config(root=tmp_path))
    text = (tmp_path / "summary.md").read_text(encoding="utf-8")
    assert text.startswith("### ✅ nbci: 1 notebook passed")
    assert "Failures" not in text and "truncated" not in text


def test_summary_stays_under_the_cap(tmp_path: Path):
    long_tb = ["x" * 1000 for _ in range(30)]
    run = RunResult([result(f"n{i:04}.ipynb", traceback=long_tb) for i in range(400)]
                    + [result(f"ok{i:04}.ipynb", status="passed") for i in range(2000)])
    sources = {f"n{i:04}.ipynb": "y = 1\n" * 100 for i in range(400)}
    text = github.summary(run, sources)
    size = len(text.encode("utf-8"))
    assert github.SUMMARY_LIMIT - github.SUMMARY_RESERVE - 40_000 < size <= github.SUMMARY_LIMIT
    assert "Summary truncated to stay under GitHub's 1 MiB limit" in text
    assert text.count("| ❌ failed |") == 400 and text.count("| ✅ passed |") == 2000  # the table fits
    assert 0 < text.count("<details>") < 400
    small = github.summary(run, sources, limit=20_000)
    assert len(small.encode("utf-8")) <= 20_000 and "| ❌ failed | `n0000.ipynb`" in small


def test_summary_counts_what_the_step_already_wrote(tmp_path: Path):
    reporter, _ = make_reporter(tmp_path)
    summary_file = tmp_path / "summary.md"
    summary_file.write_text("x" * (github.SUMMARY_LIMIT - 10_000))
    run = RunResult([result(f"n{i}.ipynb", traceback=["y" * 500] * 30) for i in range(50)])
    reporter.run_finished(run, Config(root=tmp_path))
    assert github.SUMMARY_LIMIT - 10_000 < summary_file.stat().st_size <= github.SUMMARY_LIMIT
    summary_file.write_text("x" * (github.SUMMARY_LIMIT - 100))
    reporter.run_finished(run, Config(root=tmp_path))  # no room left: nothing is appended
    assert summary_file.stat().st_size == github.SUMMARY_LIMIT - 100


def test_group_per_notebook_with_bounded_output_and_no_command_injection(tmp_path: Path):
    stream = io.StringIO()
    log = CommandLog(stream, github=True)
    log.open()
    reporter = GitHubReporter({}, log)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(...)"), nbformat.v4.new_code_cell("1/0")])
    nb.cells[0].outputs = [nbformat.v4.new_output("stream", name="stdout",
                                                  text="::error::injected\n" + "".join(f"row {i}\n" for i in range(1000)))]
    nb.cells[1].outputs = [nbformat.v4.new_output("error", ename="ZeroDivisionError", evalue="division by zero",
                                                  traceback=["Traceback", "ZeroDivisionError: division by zero"])]
    failing, invalid = result("a.ipynb", cell=1, duration=2.0), result("b.ipynb", status="invalid", cell=None)
    reporter.notebook_finished(failing, github.notebook_log(failing, nb))
    reporter.notebook_finished(invalid, github.notebook_log(invalid, None))
    live = live_commands(stream.getvalue())
    assert [(c.name, c.data) for c in live] == [("group", "❌ failed a.ipynb (2.0 s)"), ("endgroup", ""),
                                               ("group", "⚠️ invalid b.ipynb (1.2 s)"), ("endgroup", "")]
    lines = stream.getvalue().splitlines()
    first, second = (lines.index(c.line) for c in live[:2])
    body = [line for line in lines[first + 1:second] if not line.startswith("::")]
    assert len(body) <= github.LOG_LINES + 1 and "earlier lines cut" in body[0]
    assert body[-3:] == ["--- cell 1 ---", "Traceback", "ZeroDivisionError: division by zero"]
    assert "bad value in b.ipynb" in stream.getvalue().split("⚠️ invalid b.ipynb")[1]


def test_missing_github_files_are_skipped(tmp_path: Path):
    stream = io.StringIO()
    reporter = GitHubReporter({}, CommandLog(stream))
    reporter.run_finished(RunResult([result("a.ipynb")]), Config(root=tmp_path))
    assert stream.getvalue().startswith("::error file=")
    assert list(tmp_path.iterdir()) == []


def test_a_real_run_reports_to_github(project, tmp_path: Path):
    """nbci run with GITHUB_ACTIONS=true: outputs, summary and the annotation's exact line."""
    project.add("passing.ipynb", "nbs/passing.ipynb")
    target = project.write("nbs/multi line.ipynb", "import os", "a = 1\nb = 0\nprint('before')\nc = a / b\nprint(c)")
    out, summary = tmp_path / "gh_output", tmp_path / "gh_summary.md"
    env = {"GITHUB_ACTIONS": "true", "GITHUB_OUTPUT": str(out), "GITHUB_STEP_SUMMARY": str(summary),
           "GITHUB_WORKSPACE": str(project.root.parent)}
    run = project.run("run", "nbs", "--jobs", "2", env=env)
    assert run.code == 1, run.stderr
    outputs = parse_output_file(out.read_text(encoding="utf-8"))
    assert outputs["total"] == "2" and outputs["passed"] == "1" and outputs["failed"] == "1"
    assert json.loads(outputs["failed-notebooks"]) == ["nbs/multi line.ipynb"]
    assert Path(outputs["results"]) == project.root.resolve() / "nbci-output" / "results.json"
    assert Path(outputs["results"]).is_file()
    errors = [parse_command(line) for line in run.stdout.splitlines() if line.startswith("::error ")]
    [(_, props, message)] = errors
    assert props["file"] == "project/nbs/multi line.ipynb"
    assert int(props["line"]) == line_holding(target.read_text(encoding="utf-8"), '"c = a / b\\n"')
    assert message == "ZeroDivisionError: division by zero"
    text = summary.read_text(encoding="utf-8")
    assert "| ❌ failed | `nbs/multi line.ipynb` |" in text and "| ✅ passed | `nbs/passing.ipynb` |" in text
    assert "```python\na = 1\nb = 0\nprint('before')\nc = a / b\nprint(c)\n```" in text
    groups = [line for line in run.stdout.splitlines() if line.startswith("::group::")]
    assert len(groups) == 2
    assert any(g.startswith("::group::✅ passed nbs/passing.ipynb (") for g in groups)
    assert any(g.startswith("::group::❌ failed nbs/multi line.ipynb (") for g in groups)


# --- what a hostile notebook controls stays text in the summary ------------------------------------

HOSTILE = ("[x](https://e.vil) ![i](https://e.vil/p.png) <img src=x> <a href='https://e.vil'>a</a> www.evil.com "
           "https://e.vil/a **b** _c_ ~~d~~ `tick` ``two`` a|b\\|c &lt;x&gt; @someone\n\n# heading\n| x | y |\n<details>")
SUMMARY_TAGS = {"p", "code", "details", "summary"}  # the only HTML nbci writes into the summary


def hostile_result(status: str) -> NotebookResult:
    """A result of ``status`` whose every notebook-controlled field holds ``HOSTILE``."""
    result = NotebookResult(f"{status} {HOSTILE}.ipynb", status, kernel=HOSTILE, warnings=[HOSTILE],
                            parameters={HOSTILE: HOSTILE})
    if status == "changed":  # its diff is the notebook's text too, a fence's backticks included
        text = f"{HOSTILE}\n`````\n</details>\n"
        result.output_check = results.OutputCheck("fail", 1, [results.OutputDifference(0, "cell 1", HOSTILE, "changed",
                                                                                       HOSTILE, text)])
    elif status not in results.OK_STATUSES:
        with_traceback = status in ("failed", "crashed")
        result.error = CellError(HOSTILE, HOSTILE, 1 if with_traceback or status == "timeout" else None,
                                 [HOSTILE] if with_traceback else [], 2, HOSTILE if status in ("failed", "timeout") else None)
    if status == "skipped":
        result.skip_reason = HOSTILE
    if status == "cached":
        result.cached_from = {"ran_at": HOSTILE, "commit": HOSTILE, "run_id": HOSTILE}
    return result


def gfm_tokens(text: str) -> list:
    """Every block and inline token of ``text`` as GitHub-flavoured Markdown reads it."""
    tokens = MarkdownIt("gfm-like").parse(text)
    return tokens + [child for token in tokens for child in (token.children or [])]


def assert_inert(text: str, rows: int) -> None:
    """Nothing but nbci's own markup: no link, image, emphasis, heading or tag from ``HOSTILE``, and
    a table of ``rows`` rows of three cells."""
    tokens = gfm_tokens(text)
    kinds = {token.type for token in tokens}
    assert not kinds & {"link_open", "image", "em_open", "strong_open", "s_open", "html_inline"}, kinds
    assert [t.tag for t in tokens if t.type == "heading_open"] in (["h3"], ["h3", "h4"], ["h3", "h4", "h4"])
    for token in tokens:
        if token.type == "html_block":
            assert set(re.findall(r"</?([a-zA-Z][\w-]*)", token.content)) <= SUMMARY_TAGS, token.content
    assert sum(t.type == "tr_open" for t in tokens) == rows + 1  # the header and a row per notebook
    assert sum(t.type == "td_open" for t in tokens) == 3 * rows


def test_every_row_kind_shows_notebook_text_only_as_text(tmp_path: Path):
    reporter, stream = make_reporter(tmp_path)
    run = [hostile_result(status) for status in results.STATUSES]
    for result in run:
        reporter.notebook_finished(result, "")
    reporter.run_finished(RunResult(run, problems=[HOSTILE]), Config(root=tmp_path))
    text = (tmp_path / "summary.md").read_text(encoding="utf-8")
    assert_inert(text, len(results.STATUSES))
    for status in results.STATUSES:  # every row is there, its name shown as code
        assert f"| {github.STATUS_ICONS[status]} {status} | ``` {status} [x](https://e.vil)" in text
    codes = [t.content for t in gfm_tokens(text) if t.type == "code_inline"]
    assert f"failed {' '.join(HOSTILE.split())}.ipynb" in codes
    [diff] = [t.content for t in gfm_tokens(text) if t.type == "fence" and t.info == "diff"]
    assert diff.endswith("+`````\n+</details>\n")  # the whole diff inside its fence


def test_a_run_nbci_failed_in_says_so_everywhere_on_github(tmp_path: Path):
    reporter, stream = make_reporter(tmp_path)
    problems = ["internal error: KeyError: 'x'", "could not write the JUnit report: disk full"]
    run = RunResult([result("a.ipynb", status="passed")], duration=2, problems=problems)
    reporter.run_finished(run, Config(root=tmp_path))
    text = (tmp_path / "summary.md").read_text(encoding="utf-8")
    assert text.startswith("### ❌ nbci failed: 2 internal problems (2.0 s)\n\n```text\n" + "\n".join(problems) + "\n```")
    assert "✅" not in text.split("| Status |")[0]
    outputs = parse_output_file((tmp_path / "output").read_text(encoding="utf-8"))
    assert outputs["ok"] == "false" and json.loads(outputs["problems"]) == problems
    [(_, props, message)] = commands(stream, "error")
    assert props["title"] == "nbci failed: 2 internal problems" and message == "\n".join(problems)


def test_a_notebook_nbci_failed_on_is_reported_as_a_failure(tmp_path: Path):
    reporter, stream = make_reporter(tmp_path, workspace=tmp_path)
    broken = NotebookResult("a.ipynb", "error", error=CellError("NbciInternalError", "nbci could not read its copy"))
    reporter.run_finished(RunResult([broken, result("b.ipynb", status="passed")]), Config(root=tmp_path))
    text = (tmp_path / "summary.md").read_text(encoding="utf-8")
    assert text.startswith("### ❌ nbci: 1 of 2 notebooks did not pass")
    assert "| 🛑 error | `a.ipynb` |" in text
    assert "could not be handled: nbci itself failed: NbciInternalError: nbci could not read its copy" in text
    [(_, props, message)] = commands(stream, "error")
    assert props["title"] == "a.ipynb could not be handled: nbci itself failed"
    assert message == "NbciInternalError: nbci could not read its copy"
    outputs = parse_output_file((tmp_path / "output").read_text(encoding="utf-8"))
    assert outputs["failed"] == "1" and outputs["ok"] == "false"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a file name of any bytes needs Linux")
def test_a_file_name_that_is_not_utf8_loses_no_report(project, tmp_path: Path):
    """Python holds the name's stray byte as a lone surrogate, which UTF-8 cannot encode."""
    project.write("bad\udcff.ipynb", "1 / 0")
    project.write("good.ipynb", "1")
    out, summary = tmp_path / "gh_output", tmp_path / "gh_summary.md"
    env = {"GITHUB_ACTIONS": "true", "GITHUB_OUTPUT": str(out), "GITHUB_STEP_SUMMARY": str(summary),
           "GITHUB_WORKSPACE": str(project.root)}
    run = project.run("run", "--html", "--timeout", "60", env=env)
    assert run.code == 1, run.stdout + run.stderr
    assert sorted(nb["status"] for nb in run.results["notebooks"]) == ["failed", "passed"]
    assert "| ❌ failed | `bad\ufffd.ipynb` |" in summary.read_text(encoding="utf-8")
    assert json.loads(parse_output_file(out.read_text(encoding="utf-8"))["failed-notebooks"]) == ["bad\udcff.ipynb"]
    [(_, props, message)] = [parse_command(line) for line in run.stdout.splitlines() if line.startswith("::error ")]
    assert props["file"] == "bad\ufffd.ipynb" and message == "ZeroDivisionError: division by zero"
    assert "FAILED: bad\ufffd.ipynb" in run.stdout
    index = (run.output_dir / "index.html").read_text(encoding="utf-8")
    assert 'href="bad%FF.html#failure">bad\ufffd.ipynb</a>' in index and os.path.exists(run.output_dir / "bad\udcff.html")


# --- changed outputs (--check-outputs) -------------------------------------------------------------


def changed(path: str, mode: str, line: int = 7) -> NotebookResult:
    difference = results.OutputDifference(2, "cell 3 (code cell 2)", "stdout", "changed", "total: 42\ndone",
                                          "total: 43\ndone", line=line)
    extra = results.OutputDifference(4, "cell 5 (code cell 3)", "image/png", "extra")
    return NotebookResult(path, "changed", duration=1.0, output_check=results.OutputCheck(mode, 3, [difference, extra]))


def test_changed_outputs_warn_on_their_first_cell_and_show_its_diff(tmp_path: Path):
    reporter, stream = make_reporter(tmp_path, workspace=tmp_path)
    run = RunResult([result("ok.ipynb", status="passed"), changed("docs/a.ipynb", "warn")], duration=2)
    reporter.run_finished(run, Config(root=tmp_path))
    assert commands(stream, "error") == []
    [(_, props, message)] = commands(stream, "warning")
    assert (props["file"], props["line"]) == ("docs/a.ipynb", "7")
    assert props["title"] == "docs/a.ipynb: outputs changed in 2 cells (of 3 compared), first cell 3 (code cell 2)"
    assert message.splitlines() == ["cell 3 (code cell 2): stdout changed (- committed, + fresh)", "@@ -1,2 +1,2 @@",
                                    "-total: 42", "+total: 43", " done"]
    text = (tmp_path / "summary.md").read_text(encoding="utf-8")
    assert text.startswith("### ✅ nbci: 1 notebook passed; 1 changed its outputs (2.0 s)")
    assert "| 📝 changed | `docs/a.ipynb` | 1.0 s |" in text and "#### Failures" not in text
    changes = text.split("#### Changed outputs\n\n")[1]
    assert changes.startswith("<details><summary><code>docs/a.ipynb</code> outputs changed in 2 cells")
    assert "```diff\n@@ -1,2 +1,2 @@\n-total: 42\n+total: 43\n done\n```" in changes
    outputs = parse_output_file((tmp_path / "output").read_text(encoding="utf-8"))
    assert outputs["ok"] == "true" and outputs["failed"] == "0"


def test_changed_outputs_are_errors_in_fail_mode(tmp_path: Path):
    reporter, stream = make_reporter(tmp_path, workspace=tmp_path)
    run = RunResult([changed("a.ipynb", "fail"), *[changed(f"w{i}.ipynb", "warn") for i in range(12)]])
    reporter.run_finished(run, Config(root=tmp_path))
    [(_, props, message)] = commands(stream, "error")
    assert props["line"] == "7" and message.startswith("cell 3 (code cell 2): stdout changed")
    assert len(commands(stream, "warning")) == 10
    [(_, props, _)] = commands(stream, "notice")
    assert props["title"] == "nbci: 2 more changed outputs"
    text = (tmp_path / "summary.md").read_text(encoding="utf-8")
    assert text.startswith("### ❌ nbci: 1 of 13 notebooks did not pass; 13 changed their outputs")
    assert "#### Failures" not in text and text.count("```diff") == 13


@pytest.mark.parametrize("mode", ["warn", "fail"])
def test_a_real_run_shows_changed_outputs_everywhere(project, tmp_path: Path, mode: str):
    """nbci run --check-outputs with GitHub, HTML and JUnit reports: a committed output that no longer matches."""
    cells = [nbformat.v4.new_code_cell("print('total:', 41 + 1)\nprint('::error::MARK')", execution_count=1,
                                       outputs=[nbformat.v4.new_output("stream", name="stdout",
                                                                       text="total: 41\n::error::MARK\n")]),
             nbformat.v4.new_code_cell("print('same')", execution_count=2,
                                       outputs=[nbformat.v4.new_output("stream", name="stdout", text="same\n")])]
    nb = nbformat.v4.new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                                        "language": "python"}})
    target = project.root / "drift.ipynb"
    nbformat.write(nb, str(target))
    out, summary = tmp_path / "gh_output", tmp_path / "gh_summary.md"
    env = {"GITHUB_ACTIONS": "true", "GITHUB_OUTPUT": str(out), "GITHUB_STEP_SUMMARY": str(summary),
           "GITHUB_WORKSPACE": str(project.root)}
    run = project.run("run", "--check-outputs", mode, "--html", "--junit", "junit.xml", env=env)
    assert run.code == (0 if mode == "warn" else 1), run.stdout + run.stderr
    assert run.result("drift.ipynb")["status"] == "changed"
    lines = run.stdout.splitlines()
    assert lines[lines.index("--- cell 1: stdout changed (- committed, + fresh) ---") + 1:][:4] == [
        "    @@ -1,2 +1,2 @@", "    -total: 41", "    +total: 42", "     :\u200b:error:\u200b:MARK"]
    assert ("changed outputs:" if mode == "warn" else "did not pass:") in lines
    [(_, props, message)] = commands(io.StringIO(run.stdout), "warning" if mode == "warn" else "error")
    assert props["file"] == "drift.ipynb"
    assert int(props["line"]) == line_holding(target.read_text(encoding="utf-8"), "print('total:', 41 + 1)")
    assert message.splitlines()[2:4] == ["-total: 41", "+total: 42"]
    text = summary.read_text(encoding="utf-8")
    assert "| 📝 changed | `drift.ipynb` |" in text and "-total: 41\n+total: 42\n" in text.split("```diff\n")[1]
    page = (run.output_dir / "drift.html").read_text(encoding="utf-8")
    assert page.count('id="changed"') == 1 and '<span class="nbci-sign">-</span>total: 4<del>1</del>' in page
    assert 'href="drift.html#changed"' in (run.output_dir / "index.html").read_text(encoding="utf-8")
    junit = (project.root / "junit.xml").read_text(encoding="utf-8")
    assert ('type="OutputMismatch"' in junit) == (mode == "fail") and ("nbci.outputs_changed" in junit) == (mode == "warn")
