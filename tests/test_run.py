"""``nbci run`` end to end: real notebooks in real ipykernel kernels."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import List

from conftest import NOTEBOOKS, Project, Run


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_passing_notebook_exits_0_and_records_outputs(project: Project) -> None:
    project.add("passing.ipynb")
    run = project.run("run")
    assert run.code == 0, run.stderr
    result = run.result("passing.ipynb")
    assert result["status"] == "passed" and result["error"] is None
    assert result["output_path"] == "nbci-output/passing.ipynb"
    assert result["kernel"] == "python3" and result["duration"] > 0
    outputs = run.executed("passing.ipynb").cells[2].outputs
    assert outputs[0]["text"] == "42\n"
    assert run.results["summary"]["total"] == 1 and run.results["summary"]["passed"] == 1
    assert "PASSED" in run.stdout and "passing.ipynb" in run.stdout


def test_failing_cell_reports_index_error_and_keeps_partial_copy(project: Project) -> None:
    project.add("fails_at_cell_2.ipynb")
    run = project.run("run")
    assert run.code == 1
    result = run.result("fails_at_cell_2.ipynb")
    assert result["status"] == "failed"
    error = result["error"]
    assert error["cell_index"] == 2
    assert error["ename"] == "AssertionError" and error["evalue"] == "y is 2"
    assert not any("\x1b[" in line for line in error["traceback"])
    executed = run.executed("fails_at_cell_2.ipynb")
    assert executed.cells[1].execution_count == 2
    assert executed.cells[2].outputs[-1]["output_type"] == "error"
    assert executed.cells[3].outputs == [] and executed.cells[3].execution_count is None
    assert executed.metadata["nbci"]["status"] == "failed"
    # the terminal shows the failing cell's source and the traceback, without ANSI noise
    assert "assert y == 3, f'y is {y}'" in run.stdout
    assert "AssertionError: y is 2" in run.stdout and "\x1b[" not in run.stdout


def test_cell_timeout_kills_the_kernel_and_keeps_going(project: Project) -> None:
    project.add("sleeps.ipynb")
    project.add("passing.ipynb")
    run = project.run("run", "--timeout", "2", timeout=100)
    assert run.code == 1
    result = run.result("sleeps.ipynb")
    assert result["status"] == "timeout"
    assert result["error"]["cell_index"] == 1
    assert result["duration"] < 60
    assert run.result("passing.ipynb")["status"] == "passed"
    cell = run.executed("sleeps.ipynb").cells[1]
    assert cell.outputs[-1]["ename"] == "CellTimeoutError"


def test_dead_kernel_is_crashed_with_exit_code(project: Project) -> None:
    project.add("kernel_dies.ipynb")
    run = project.run("run")
    assert run.code == 1
    result = run.result("kernel_dies.ipynb")
    assert result["status"] == "crashed"
    assert result["error"]["cell_index"] == 1
    assert "exited with code 1" in result["error"]["evalue"]
    assert (run.output_dir / "kernel_dies.ipynb").exists()


def test_invalid_json_is_reported_and_others_still_run(project: Project) -> None:
    project.add("invalid_json.ipynb")
    project.add("passing.ipynb")
    run = project.run("run")
    assert run.code == 1
    invalid = run.result("invalid_json.ipynb")
    assert invalid["status"] == "invalid"
    assert "JSON" in invalid["error"]["evalue"] and "not a readable notebook" not in invalid["error"]["evalue"]
    assert invalid["output_path"] is None
    assert run.result("passing.ipynb")["status"] == "passed"


def test_raises_exception_and_skip_execution_tags(project: Project) -> None:
    project.add("tags.ipynb")
    run = project.run("run")
    assert run.code == 0, run.stdout
    cells = run.executed("tags.ipynb").cells
    assert cells[0].outputs[0]["ename"] == "ValueError"
    assert cells[1].outputs == [] and cells[1].execution_count is None
    assert cells[2].outputs[0]["text"] == "after\n"


def test_allow_errors_runs_every_cell(project: Project) -> None:
    project.add("fails_at_cell_2.ipynb")
    run = project.run("run", "--allow-errors")
    assert run.code == 0
    assert run.executed("fails_at_cell_2.ipynb").cells[3].outputs[0]["text"] == "not reached\n"


def test_unicode_spaces_and_same_name_in_two_folders(project: Project) -> None:
    project.add("passing.ipynb", "a/x.ipynb")
    project.add("fails_at_cell_2.ipynb", "b/x.ipynb")
    project.add("passing.ipynb", "données spéciales/mon carnet.ipynb")
    run = project.run("run")
    assert run.code == 1
    assert run.result("a/x.ipynb")["status"] == "passed"
    assert run.result("b/x.ipynb")["status"] == "failed"
    assert run.result("données spéciales/mon carnet.ipynb")["status"] == "passed"
    assert (run.output_dir / "a" / "x.ipynb").exists() and (run.output_dir / "b" / "x.ipynb").exists()
    assert (run.output_dir / "données spéciales" / "mon carnet.ipynb").exists()


def test_sources_are_byte_identical_after_a_run(project: Project) -> None:
    names = ["passing.ipynb", "fails_at_cell_2.ipynb", "kernel_dies.ipynb", "invalid_json.ipynb"]
    before = {name: digest(project.add(name)) for name in names}
    project.run("run")
    assert {name: digest(project.root / name) for name in names} == before


def test_inplace_writes_over_the_source(project: Project) -> None:
    source = project.add("passing.ipynb")
    run = project.run("run", "--inplace")
    assert run.code == 0
    assert digest(source) != digest(NOTEBOOKS / "passing.ipynb")
    assert run.result("passing.ipynb")["output_path"] == "passing.ipynb"


def test_inplace_never_writes_through_a_link_the_notebook_made_of_its_own_name(project: Project,
                                                                                tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("kept\n")
    project.write("swap.ipynb", f"import os\nos.remove('swap.ipynb')\nos.symlink({str(victim)!r}, 'swap.ipynb')")
    run = project.run("run", "--inplace")
    assert run.code == 1 and victim.read_text() == "kept\n"
    result = run.result("swap.ipynb")
    assert result["status"] == "failed" and "leads outside the working directory" in result["error"]["evalue"]


def test_inplace_still_writes_copies_to_an_output_dir_outside_the_working_directory(project: Project) -> None:
    """A text notebook's copy (and every copy of a run without --inplace) may go outside the working directory."""
    (project.root / "words.py").write_text("# %%\nprint('words')\n", encoding="utf-8")
    run = project.run("run", "--inplace", "--output-dir", "../elsewhere", "words.py")
    assert run.code == 0, run.stdout + run.stderr
    assert (project.root.parent / "elsewhere" / run.result("words.py")["output_path"].split("/")[-1]).is_file()


def test_second_run_does_not_pick_up_the_output_dir(project: Project) -> None:
    project.add("passing.ipynb")
    assert project.run("run").code == 0
    second = project.run("run")
    assert [nb["path"] for nb in second.results["notebooks"]] == ["passing.ipynb"]


def finish_order(run: Run) -> List[str]:
    return [line.split()[1] for line in run.stdout.splitlines() if line.startswith("PASSED")]


def test_next_run_starts_with_what_took_longest_last_time(project: Project) -> None:
    project.write("a_slow.ipynb", "total = sum(range(30_000_000))")  # a small file that takes long
    project.write("z_fast.ipynb", "x = 1", "# " + "padding " * 20_000)  # a big file that does not
    first = project.run("run", "--jobs", "1")
    assert finish_order(first) == ["z_fast.ipynb", "a_slow.ipynb"]  # nothing known yet: bigger first
    took = {nb["path"]: nb["duration"] for nb in first.results["notebooks"]}
    assert took["a_slow.ipynb"] > took["z_fast.ipynb"]
    assert finish_order(project.run("run", "--jobs", "1")) == ["a_slow.ipynb", "z_fast.ipynb"]
    (project.root / "nbci-output" / "results.json").write_text("{")  # unreadable: only the order is lost
    third = project.run("run", "--jobs", "1")
    assert third.code == 0 and finish_order(third) == ["z_fast.ipynb", "a_slow.ipynb"]


def test_working_directory_is_the_notebooks_folder(project: Project) -> None:
    project.add("reads_cwd.ipynb", "sub/reads_cwd.ipynb")
    (project.root / "sub" / "data.txt").write_text("hello", encoding="utf-8")
    run = project.run("run")
    assert run.code == 0, run.stdout
    assert run.executed("sub/reads_cwd.ipynb").cells[0].outputs[0]["data"]["text/plain"] == "'hello'"


def test_no_notebooks_is_a_usage_error_unless_told_otherwise(project: Project) -> None:
    run = project.run("run")
    assert run.code == 2
    assert run.stderr.count("\n") == 1 and "no notebooks match" in run.stderr
    assert project.run("run", "--if-no-notebooks", "warn").code == 0
    assert project.run("run", "--if-no-notebooks", "ignore").code == 0


def test_bad_options_exit_2_with_one_line(project: Project) -> None:
    project.add("passing.ipynb")
    for args in (["--timeout", "-1"], ["--jobs", "0"], ["--if-no-notebooks", "maybe"], ["--frobnicate"],
                 ["../outside.ipynb"], ["missing.ipynb"], ["--memory-limit", "lots"]):
        run = project.run("run", *args)
        assert run.code == 2, args
        assert run.stderr.startswith("nbci: error: ") and run.stderr.count("\n") == 1, (args, run.stderr)
        assert "Traceback" not in run.stderr


def test_options_come_from_nbci_environment_variables(project: Project) -> None:
    project.add("sleeps.ipynb")
    project.add("passing.ipynb", "keep me.ipynb")
    run = project.run("run", env={"NBCI_NOTEBOOKS": "sleeps.ipynb 'keep me.ipynb'", "NBCI_TIMEOUT": "1",
                                  "NBCI_OUTPUT_DIR": "out", "NBCI_JOBS": ""}, timeout=100)
    assert run.code == 1
    assert (project.root / "out" / "results.json").exists()
    statuses = {nb["path"]: nb["status"] for nb in
                __import__("json").loads((project.root / "out" / "results.json").read_text())["notebooks"]}
    assert statuses == {"sleeps.ipynb": "timeout", "keep me.ipynb": "passed"}
    bad = project.run("run", env={"NBCI_TIMEOUT": "soon"})
    assert bad.code == 2 and "NBCI_TIMEOUT" in bad.stderr


def test_junit_report_lists_every_notebook(project: Project) -> None:
    project.add("passing.ipynb")
    project.add("fails_at_cell_2.ipynb")
    run = project.run("run")
    xml = (run.output_dir / "junit.xml").read_text(encoding="utf-8")
    assert 'tests="2"' in xml and 'failures="1"' in xml
    assert 'name="fails_at_cell_2.ipynb"' in xml and "AssertionError" in xml


def test_junit_report_reads_back_as_test_report_tools_read_it(project: Project) -> None:
    from junitparser import Failure, JUnitXml

    project.add("passing.ipynb")
    project.add("fails_at_cell_2.ipynb")
    project.write("control.ipynb", "raise ValueError('bell \\x07 escape \\x1b[31m nul \\x00 end')")
    run = project.run("run", "--timeout", "60")
    parsed = JUnitXml.fromfile(str(run.output_dir / "junit.xml"))  # a strict XML parser underneath
    suites = list(parsed) if isinstance(parsed, JUnitXml) else [parsed]
    cases = {case.name: case for suite in suites for case in suite}
    assert sorted(cases) == ["control.ipynb", "fails_at_cell_2.ipynb", "passing.ipynb"]
    assert cases["passing.ipynb"].is_passed
    [failure] = [r for r in cases["fails_at_cell_2.ipynb"].result if isinstance(r, Failure)]
    error = run.result("fails_at_cell_2.ipynb")["error"]
    assert failure.message == f"{error['ename']}: {error['evalue']}" and failure.type == "failed"
    assert error["code_cell"] == error["cell_index"] + 1  # every cell before it is a code cell: named once
    assert cases["fails_at_cell_2.ipynb"].system_out.startswith(f"cell {error['cell_index'] + 1}:\n")
    assert error["source"] in cases["fails_at_cell_2.ipynb"].system_out
    [control] = cases["control.ipynb"].result
    assert control.message.startswith("ValueError: bell \ufffd escape") and "\x00" not in control.message


def test_a_bare_bool_flag_before_a_notebook_leaves_the_notebook_a_path(project: Project) -> None:
    """``nbci run --update-outputs one.ipynb`` runs one.ipynb (not "one.ipynb is not true or false")."""
    project.write("one.ipynb", "print(1)")
    project.write("two.ipynb", "print(2)")
    run = project.run("run", "--html", "--update-outputs", "one.ipynb")
    assert run.code == 0, run.stdout + run.stderr
    assert [result["path"] for result in run.results["notebooks"]] == ["one.ipynb"]
    assert (run.output_dir / "index.html").is_file()
    off = project.run("run", "--html", "false", "two.ipynb")
    assert off.code == 0 and not (off.output_dir / "two.html").exists()
    short = project.run("run", "--htm", "two.ipynb")  # an abbreviation argparse takes for --html
    assert short.code == 0 and (short.output_dir / "two.html").is_file(), short.stderr
