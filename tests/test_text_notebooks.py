"""Text notebooks (jupytext): percent scripts and MyST Markdown run like their ``.ipynb`` twins."""

from __future__ import annotations

import os
import shutil

import pytest
from conftest import NOTEBOOKS, Project
from runner_log import live_commands

PERCENT = """\
# %%
x = 1

# %% [markdown]
# The next cell fails, as in fails_at_cell_2.ipynb

# %%
y = x + 1

# %%
assert y == 3, f'y is {y}'

# %%
print('not reached')
"""
MYST = """\
---
jupytext:
  text_representation:
    format_name: myst
kernelspec:
  display_name: Python 3
  name: python3
---

# A MyST notebook

```{code-cell} ipython3
x = 1
y = x + 1
```

```{code-cell} ipython3
z = 0
assert y == 3, f'y is {y}'
```
"""


def write_twins(project: Project) -> None:
    shutil.copy(NOTEBOOKS / "fails_at_cell_2.ipynb", project.root / "twin.ipynb")
    (project.root / "py").mkdir()
    (project.root / "py" / "twin.py").write_text(PERCENT, encoding="utf-8")
    (project.root / "md").mkdir()
    (project.root / "md" / "twin.md").write_text(MYST, encoding="utf-8")


def failing_line(project: Project, path: str, line: int) -> str:
    return (project.root / path).read_text(encoding="utf-8").splitlines()[line - 1]


def test_text_notebooks_fail_like_their_ipynb_twin_at_the_line_in_the_text(project: Project) -> None:
    write_twins(project)
    run = project.run("run", "twin.ipynb", "py/twin.py", "md/twin.md")
    assert run.code == 1, run.stderr
    errors = {path: run.result(path)["error"] for path in ("twin.ipynb", "py/twin.py", "md/twin.md")}
    assert {path: (e["ename"], e["evalue"]) for path, e in errors.items()} == {
        path: ("AssertionError", "y is 2") for path in errors}
    assert errors["py/twin.py"]["cell_index"] == 3 and errors["py/twin.py"]["code_cell"] == 3  # markdown between
    for path, error in errors.items():
        assert "assert y == 3" in failing_line(project, path, error["line"]), path
    assert errors["py/twin.py"]["line"] == 11 and errors["md/twin.md"]["line"] == 19
    assert run.result("py/twin.py")["output_path"] == "nbci-output/py/twin.py.ipynb"
    copy = run.executed("py/twin.py.ipynb")
    assert [c.cell_type for c in copy.cells] == ["code", "markdown", "code", "code", "code"]
    assert copy.cells[3].outputs[-1]["ename"] == "AssertionError"


def test_a_passing_text_notebook_passes(project: Project) -> None:
    (project.root / "ok.py").write_text("# %%\nimport sys\n\n# %%\nprint('ran', 6 * 7)\n", encoding="utf-8")
    run = project.run("run", "ok.py")
    assert run.code == 0, run.stderr
    assert run.executed("ok.py.ipynb").cells[1].outputs[0]["text"] == "ran 42\n"


def test_a_text_notebook_and_the_ipynb_named_like_its_copy_each_keep_their_copy(project: Project) -> None:
    (project.root / "a.py").write_text("# %%\nprint('from a.py')\n", encoding="utf-8")
    project.write("a.py.ipynb", "print('from a.py.ipynb')")
    project.write("a.py.text.ipynb", "print('from a.py.text.ipynb')")
    (project.root / "x.md").write_text(MYST, encoding="utf-8")
    project.write("x.md.ipynb", "print('from x.md.ipynb')")
    run = project.run("run", "a.py", "x.md", "*.ipynb", "--jobs", "1")
    copies = {nb["path"]: nb["output_path"] for nb in run.results["notebooks"]}
    assert copies == {"a.py": "nbci-output/a.py.text-2.ipynb", "a.py.ipynb": "nbci-output/a.py.ipynb",
                      "a.py.text.ipynb": "nbci-output/a.py.text.ipynb", "x.md": "nbci-output/x.md.text.ipynb",
                      "x.md.ipynb": "nbci-output/x.md.ipynb"}
    for path in ("a.py", "a.py.ipynb", "a.py.text.ipynb", "x.md.ipynb"):
        copy = run.executed(copies[path][len("nbci-output/"):])
        assert copy.cells[-1].outputs[0]["text"] == f"from {path}\n"
    assert run.executed("x.md.text.ipynb").metadata["nbci"]["status"] == "failed"


def test_a_text_notebook_and_its_ipynb_namesake_each_get_their_own_page(project: Project) -> None:
    (project.root / "a.py").write_text("# %%\nprint('from the text notebook')\n", encoding="utf-8")
    project.write("a.py.ipynb", "print('from the ipynb')")
    run = project.run("run", "a.py", "a.py.ipynb", "--html")
    assert run.code == 0, run.stderr
    pages = {name: (run.output_dir / name).read_text(encoding="utf-8") for name in ("a.py.html", "a.py.text.html")}
    assert "from the ipynb" in pages["a.py.html"] and "from the text notebook" not in pages["a.py.html"]
    assert "from the text notebook" in pages["a.py.text.html"]


def test_globs_pick_up_only_text_files_that_are_notebooks(project: Project) -> None:
    write_twins(project)
    (project.root / "py" / "helper.py").write_text("def helper():\n    return 1\n", encoding="utf-8")
    (project.root / "md" / "README.md").write_text("# Just docs\n\n```python\nx = 1\n```\n", encoding="utf-8")
    listed = project.run("list", "**/*.py", "**/*.md", "--json")
    assert listed.code == 0, listed.stderr
    assert listed.stdout.strip() == '["md/twin.md", "py/twin.py"]'
    assert project.run("list").stdout.split() == ["twin.ipynb"]  # the default stays **/*.ipynb


def test_globbed_text_files_are_read_safely(project: Project, tmp_path) -> None:
    outside = tmp_path / "outside.py"
    outside.write_text("# %%\nprint('outside')\n")
    (project.root / "link.py").symlink_to(outside)
    os.mkfifo(project.root / "pipe.py")  # sniffing it must not block the run
    (project.root / "ok.py").write_text("# %%\n1\n", encoding="utf-8")
    run = project.run("run", "*.py", timeout=120)
    statuses = {nb["path"]: nb["status"] for nb in run.results["notebooks"]}
    assert statuses == {"link.py": "invalid", "ok.py": "passed", "pipe.py": "invalid"}
    assert "outside the working directory" in run.result("link.py")["error"]["evalue"]
    assert "not a regular file" in run.result("pipe.py")["error"]["evalue"]


def test_a_plain_script_named_explicitly_is_skipped_with_the_reason(project: Project) -> None:
    (project.root / "script.py").write_text("print('not a notebook')\n", encoding="utf-8")
    (project.root / "ok.py").write_text("# %%\n1\n", encoding="utf-8")
    run = project.run("run", "script.py", "ok.py")
    assert run.code == 0, run.stdout
    result = run.result("script.py")
    assert result["status"] == "skipped" and result["output_path"] is None and result["error"] is None
    assert result["skip_reason"].startswith("not a notebook: a .py file with no jupytext header and no '# %%' cells")
    assert "quote it (nbci run 'docs/*.py')" in result["skip_reason"]
    assert run.stdout.count("script.py") == 1  # its row, once: it is not a failure
    assert run.result("ok.py")["status"] == "passed"
    (project.root / "notes.txt").write_text("# %%\n1\n", encoding="utf-8")
    other = project.run("run", "notes.txt")
    assert other.code == 2 and "not a notebook file (.ipynb, or a text notebook: .py, .md, .Rmd, .qmd)" in other.stderr


def test_annotations_point_at_the_text_file_line(project: Project) -> None:
    write_twins(project)
    run = project.run("run", "py/twin.py", env={"GITHUB_ACTIONS": "true"})
    errors = [c.line for c in live_commands(run.stdout) if c.name == "error"]
    assert len(errors) == 1 and "file=py/twin.py,line=11," in errors[0], run.stdout


def test_without_jupytext_a_text_notebook_says_what_to_install(project: Project, tmp_path) -> None:
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "jupytext.py").write_text("raise ImportError('no jupytext here')\n")
    (project.root / "ok.py").write_text("# %%\n1\n", encoding="utf-8")
    run = project.run("run", "ok.py", env={"PYTHONPATH": str(shim)})
    assert run.code == 1
    assert "a text notebook needs jupytext: pip install 'nbci[text]'" in run.result("ok.py")["error"]["evalue"]


@pytest.mark.parametrize("parameters", [False, True])
def test_ipynb_error_line_is_the_json_line_of_the_failing_source(project: Project, parameters: bool) -> None:
    shutil.copy(NOTEBOOKS / "fails_at_cell_2.ipynb", project.root / "twin.ipynb")
    (project.root / "broken.ipynb").write_text('{\n "cells": [\n  oops\n', encoding="utf-8")
    run = project.run("run", *(["-p", "rows", "1"] if parameters else []))
    error = run.result("twin.ipynb")["error"]
    assert error["cell_index"] == (3 if parameters else 2)  # in the executed copy, with the injected cell
    assert "assert y == 3" in failing_line(project, "twin.ipynb", error["line"])
    assert run.result("broken.ipynb")["error"]["line"] == 3  # where its JSON breaks
