"""Parameters, papermill's way: ``-p``, ``--parameters FILE``, ``--parameters-yaml`` and ``.nbci.yml``."""

from __future__ import annotations

import nbformat
import pytest
from conftest import Project, Run

from nbci.parameters import inject, python_literal


def write_report(project: Project) -> None:
    nb = project.write("report.ipynb", "rows = 10\nname = 'x'", "print(repr(rows), repr(name))")
    data = nbformat.read(str(nb), as_version=4)
    data.cells[0].metadata["tags"] = ["parameters"]
    nbformat.write(data, str(nb))


def printed(run: Run, path: str = "report.ipynb") -> str:
    return "".join(o.get("text", "") for cell in run.executed(path).cells for o in cell.get("outputs", []))


def test_values_from_p_are_yaml_and_land_after_the_parameters_cell(project: Project) -> None:
    write_report(project)
    run = project.run("run", "-p", "rows", "5", "-p", "name", "abc")
    assert run.code == 0, run.stderr
    cells = run.executed("report.ipynb").cells
    assert [c.metadata.get("tags") for c in cells] == [["parameters"], ["injected-parameters"], None]
    assert cells[1].source == "# Parameters\nrows = 5\nname = 'abc'\n"
    assert printed(run) == "5 'abc'\n"
    assert run.result("report.ipynb")["parameters"] == {"rows": 5, "name": "abc"}
    source = nbformat.read(str(project.root / "report.ipynb"), as_version=4)
    assert len(source.cells) == 2  # the source is untouched


def test_precedence_settings_file_then_parameters_file_then_p(project: Project) -> None:
    write_report(project)
    (project.root / ".nbci.yml").write_text("defaults:\n  parameters: {rows: 1, name: from-defaults}\n"
                                           "notebooks:\n  - glob: report.ipynb\n    parameters: {rows: 2}\n")
    assert printed(project.run("run")) == "2 'from-defaults'\n"
    (project.root / "params.yml").write_text("rows: 3\nname: from-file\n")
    assert printed(project.run("run", "--parameters", "params.yml")) == "3 'from-file'\n"
    run = project.run("run", "--parameters", "params.yml", "-p", "name", "'7'")
    assert printed(run) == "3 '7'\n"  # a quoted YAML value stays text


def test_without_a_parameters_cell_the_values_go_first(project: Project) -> None:
    project.write("plain.ipynb", "print(rows * 2)")
    run = project.run("run", "--parameters-yaml", "{rows: 21}")
    assert run.code == 0, run.stderr
    cells = run.executed("plain.ipynb").cells
    assert cells[0].metadata["tags"] == ["injected-parameters"] and printed(run, "plain.ipynb") == "42\n"


def test_a_value_that_is_not_yaml_is_a_usage_error(project: Project) -> None:
    project.write("plain.ipynb", "1")
    run = project.run("run", "-p", "rows", "[1, 2")
    assert run.code == 2 and not (project.root / "nbci-output").exists()
    assert run.stderr.startswith("nbci: error: -p rows '[1, 2': not a valid YAML value") and len(run.stderr.splitlines()) == 1
    bad_name = project.run("run", "-p", "not-a-name", "1")
    assert bad_name.code == 2 and "'not-a-name' is not a Python variable name" in bad_name.stderr


@pytest.mark.parametrize("args, message", [
    (("-p", "x", "!!binary aGk="), "-p x: bytes values (from a YAML !!tag) are not allowed"),
    (("-p", "x", "9" * 5000), "-p x: Exceeds the limit (4300 digits)"),
    (("--parameters-yaml", "{x: !!set {a: null}}"), "--parameters-yaml: set values (from a YAML !!tag) are not allowed"),
])
def test_a_value_json_cannot_hold_is_a_usage_error(project: Project, args, message: str) -> None:
    project.write("plain.ipynb", "1")
    run = project.run("run", *args)
    assert run.code == 2 and not (project.root / "nbci-output").exists(), run.stderr
    assert run.stderr.startswith(f"nbci: error: {message}") and len(run.stderr.splitlines()) == 1, run.stderr


def test_a_notebook_in_another_language_is_invalid_with_the_reason(project: Project) -> None:
    nb = project.write("r.ipynb", "1")
    data = nbformat.read(str(nb), as_version=4)
    data.metadata.kernelspec["language"] = "R"
    nbformat.write(data, str(nb))
    run = project.run("run", "-p", "rows", "1")
    assert run.code == 1 and run.result("r.ipynb")["status"] == "invalid"
    assert "parameters are written as Python, and this notebook's language is R" in run.result("r.ipynb")["error"]["evalue"]


def test_injection_replaces_an_earlier_injected_cell_and_writes_literals() -> None:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("a = 1", metadata={"tags": ["parameters"]}),
                                         nbformat.v4.new_code_cell("a = 9", metadata={"tags": ["injected-parameters"]}),
                                         nbformat.v4.new_code_cell("print(a)")])
    inject(nb, {"a": 2, "b": [1, {"k": None}], "c": float("inf")})
    assert [c.source for c in nb.cells][1] == "# Parameters\na = 2\nb = [1, {'k': None}]\nc = float('inf')\n"
    assert len(nb.cells) == 3
    for value in ("text with 'quotes'\n", True, None, 1.5, {"nested": [1, "x"]}):
        assert eval(python_literal(value)) == value
