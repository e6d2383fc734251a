"""The console report as a person reads a CI log: header, named cells, folded repeats, a closing list."""

from __future__ import annotations

import io
from pathlib import Path
from typing import List

import nbformat

from conftest import Project
from nbci.config import Config
from nbci.report.console import ConsoleReporter
from nbci.report.workflow_commands import CommandLog
from nbci.results import CellError, NotebookResult, OutputCheck, OutputDifference, RunResult


def test_console_names_cells_folds_repeats_and_lists_what_did_not_pass(project: Project) -> None:
    for name in ("a", "b", "c"):
        project.write(f"missing_{name}.ipynb", "open('no-such-file.csv')")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Title"), nbformat.v4.new_code_cell("x = 1"),
                                         nbformat.v4.new_markdown_cell("Then:"), nbformat.v4.new_code_cell("x / 0")])
    nb.metadata.kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(project.root / "later.ipynb"))
    project.write("syntax.ipynb", "def broken(:\n    pass")
    project.write("fine.ipynb", "1")
    run = project.run("run", "--jobs", "2", "--timeout", "60")
    lines = run.stdout.splitlines()
    assert lines[0].startswith("nbci: 6 notebooks, 2 at a time, 60 s per cell, executed copies in ")
    assert run.result("later.ipynb")["error"]["code_cell"] == 2
    assert "--- cell 4 (code cell 2) ---" in lines  # 1-based over all cells, then over the code cells
    assert sum(line.startswith("FAILED: missing_") for line in lines) == 1  # shown in full once ...
    assert "the same FileNotFoundError in 2 more notebooks: missing_b.ipynb, missing_c.ipynb" in lines  # ... then folded
    syntax = run.stdout.split("FAILED: syntax.ipynb")[1].split("=" * 70)[0].split("did not pass:")[0]
    assert sum("SyntaxError" in line for line in syntax.splitlines()) == 1  # once, not again with a temp file name
    closing = lines[lines.index("did not pass:") + 1:]
    assert [line.split()[1].split(":")[0] for line in closing[:5]] == sorted(
        ["later.ipynb", "missing_a.ipynb", "missing_b.ipynb", "missing_c.ipynb", "syntax.ipynb"])
    later = run.result("later.ipynb")["error"]["line"]
    assert f"  FAILED            later.ipynb:{later}  cell 4 (code cell 2)  ZeroDivisionError: division by zero" in closing
    assert all(len(line) <= 2 + 200 + 30 for line in closing)
    assert "SyntaxError: invalid syntax" in run.stdout.split("did not pass:")[1] and ".py, line" not in closing[-1]


def test_an_unreadable_notebook_says_why_once(project: Project) -> None:
    (project.root / "broken.ipynb").write_text("{not json")
    run = project.run("run", "--timeout", "60")
    assert run.code == 1
    evalue = run.result("broken.ipynb")["error"]["evalue"]
    assert "not a readable notebook" not in evalue and "JSON" in evalue
    line = run.result("broken.ipynb")["error"]["line"]
    assert f"INVALID           broken.ipynb:{line}  InvalidNotebook: " + evalue[:40] in run.stdout


def test_a_run_nbci_failed_in_ends_saying_so_and_an_error_reads_as_a_failure() -> None:
    stream = io.StringIO()
    broken = NotebookResult("a\nb.ipynb", "error", error=CellError("NbciInternalError", "its copy is unreadable"))
    run = RunResult([broken, NotebookResult("ok.ipynb", "passed")], problems=["internal error: KeyError: 'x'\nmore"])
    ConsoleReporter(CommandLog(stream)).run_finished(run, Config(root=Path.cwd()))
    lines = stream.getvalue().splitlines()
    assert "ERROR: a\\nb.ipynb" in lines
    assert "  ERROR             a\\nb.ipynb  NbciInternalError: its copy is unreadable" in lines
    assert lines[-2:] == ["nbci failed: 1 internal problem:", "  internal error: KeyError: 'x'\\nmore"]


def test_a_skip_reason_and_an_ename_never_start_a_log_line_of_their_own() -> None:
    stream = io.StringIO()
    reporter = ConsoleReporter(CommandLog(stream))
    reporter.notebook_finished(NotebookResult("gpu.ipynb", "skipped", skip_reason="GPU\n::error::MARK-skip"), "")
    failures = [NotebookResult(f"{name}.ipynb", "failed", error=CellError("Bad\n::error::MARK-ename", "x", 0))
                for name in "ab"]
    reporter.run_finished(RunResult(failures), Config(root=Path.cwd()))
    lines = stream.getvalue().splitlines()
    assert not [line for line in lines if "::error" in line or line.startswith((":", "MARK"))]
    assert "SKIPPED          gpu.ipynb (GPU\\n:\u200b:error:\u200b:MARK-skip)" in lines
    assert "the same Bad\\n:\u200b:error:\u200b:MARK-ename in 1 more notebooks: b.ipynb" in lines


def changed_result(path: str, mode: str, *differences: OutputDifference) -> NotebookResult:
    return NotebookResult(path, "changed", output_check=OutputCheck(mode, compared=4, differences=list(differences)))


def printed(run: RunResult) -> List[str]:
    stream = io.StringIO()
    reporter = ConsoleReporter(CommandLog(stream))
    for result in run.notebooks:
        reporter.notebook_finished(result, "")
    reporter.run_finished(run, Config(root=Path.cwd()))
    return stream.getvalue().splitlines()


def test_changed_outputs_show_a_bounded_diff_listed_apart_when_they_only_warn() -> None:
    counted = OutputDifference(1, "cell 2 (code cell 2)", "stdout", "changed", "\n".join(f"row {i}" for i in range(100)),
                               "\n".join(f"row {i}" if i != 50 else "row fifty" for i in range(100)), line=12)
    hostile = OutputDifference(3, "cell 4 (code cell 4)", "text/plain", "changed", "1\n2\n" + "x" * 5000,
                               "::error::MARK-diff\n##[group]MARK\n" + "y" * 5000)
    many = [OutputDifference(i, f"cell {i + 1}", "stderr", "missing", "gone") for i in range(5, 12)]
    warned = changed_result("warned.ipynb", "warn", counted, hostile, *many)
    note = NotebookResult("empty.ipynb", "passed", output_check=OutputCheck("warn", note="nothing to compare"))
    lines = printed(RunResult([warned, note, NotebookResult("ok.ipynb", "passed")]))
    assert "CHANGED          warned.ipynb (0.0 s)" in lines and "  outputs: nothing to compare" in lines
    block = lines[lines.index("CHANGED: warned.ipynb"):]
    assert block[1:8] == ["--- cell 2 (code cell 2): stdout changed (- committed, + fresh) ---", "    @@ -49,5 +49,5 @@",
                          "     row 48", "     row 49", "    -row 50", "    +row fifty", "     row 51"]
    assert "--- cell 6: stderr missing (committed, not produced now) (- committed, + fresh) ---" in block
    assert "... 4 more differing outputs: see results.json" in block  # 9 differ, 5 shown
    assert not [line for line in lines if line.startswith((":", "##[", "MARK")) or "::" in line or "##[" in line]
    assert "    +:\u200b:error:\u200b:MARK-diff" in block and "    +##\u200b[group]MARK" in block
    assert all(len(line) < 400 for line in lines)  # a long line is clipped
    assert "did not pass:" not in lines
    listed = lines[lines.index("changed outputs:") + 1]
    assert listed == ("  CHANGED           warned.ipynb  outputs changed in 9 cells (of 4 compared), "
                      "first cell 2 (code cell 2)")


def test_changed_outputs_fail_the_run_in_fail_mode() -> None:
    difference = OutputDifference(0, "cell 1 (code cell 1)", "text/plain", "extra", "", "42")
    lines = printed(RunResult([changed_result("strict.ipynb", "fail", difference)]))
    assert lines[lines.index("did not pass:") + 1].startswith("  CHANGED           strict.ipynb  outputs changed in 1 cell")
    assert "changed outputs:" not in lines
    assert lines[lines.index("CHANGED: strict.ipynb") + 1:][:3] == [
        "--- cell 1 (code cell 1): text/plain new (not in the committed notebook) (- committed, + fresh) ---",
        "    @@ -0,0 +1 @@", "    +42"]
