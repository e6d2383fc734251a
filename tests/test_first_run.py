"""A first run as a new user makes it: unquoted globs, empty notebooks, downloaded artifacts, frozen cells."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nbformat
from conftest import Project

MYST = """\
---
jupytext:
  formats: md:myst
  text_representation:
    extension: .md
    format_name: myst
    format_version: 0.13
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---

# A tutorial, as numpy-tutorials writes them

```{code-cell}
x = 1
```
"""
PERCENT = "# %%\nx = 1\n\n# %%\ny = 2\n\n# %%\nassert x == y, 'no'\n"


def write_content(project: Project) -> None:
    """numpy-tutorials' layout: MyST notebooks beside Markdown pages that are not notebooks."""
    content = project.root / "content"
    content.mkdir()
    (content / "tutorial.md").write_text(MYST, encoding="utf-8")
    (content / "index.md").write_text("# Tutorials\n\n```{toctree}\ntutorial\n```\n", encoding="utf-8")
    (content / "contributing.md").write_text("# Contributing\n\n```python\nprint(1)\n```\n", encoding="utf-8")


def test_an_unquoted_glob_skips_the_markdown_pages_that_are_not_notebooks(project: Project) -> None:
    write_content(project)
    named = sorted(path.relative_to(project.root).as_posix() for path in (project.root / "content").glob("*.md"))
    run = project.run("run", *named)  # what the shell makes of content/*.md
    assert run.code == 0, run.stdout + run.stderr
    statuses = {nb["path"]: nb["status"] for nb in run.results["notebooks"]}
    assert statuses == {"content/contributing.md": "skipped", "content/index.md": "skipped",
                        "content/tutorial.md": "passed"}
    reason = run.result("content/index.md")["skip_reason"]
    assert reason.startswith("not a notebook: a .md file with no jupytext header") and "quote it" in reason
    assert "3 notebooks: 1 passed, 2 skipped" in run.stdout
    assert "did not pass" not in run.stdout


def test_a_glob_matching_only_pages_says_how_many_it_looked_at(project: Project) -> None:
    write_content(project)
    (project.root / "content" / "tutorial.md").unlink()
    run = project.run("run", "content/*.md")
    assert run.code == 2
    assert "no notebooks match content/*.md" in run.stderr
    assert "the globs matched 2 text files, such as content/contributing.md, and none is a notebook" in run.stderr
    alone = project.run("run", "content/index.md*", "--if-no-notebooks", "warn")
    assert alone.code == 0 and "matched 1 text file, such as content/index.md, and it is not a notebook" in alone.stderr


def test_a_notebook_without_code_cells_says_so(project: Project, tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Only words")])
    nbformat.write(nb, str(project.root / "words.ipynb"))
    project.write("code.ipynb", "1 + 1")
    summary = tmp_path / "summary.md"
    run = project.run("run", env={"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary)})
    assert run.code == 0, run.stdout
    assert run.result("words.ipynb")["status"] == "passed" and run.result("words.ipynb")["cells_run"] == 0
    assert run.result("code.ipynb")["cells_run"] == 1
    rows = {line.split()[1]: line for line in run.stdout.splitlines() if line.startswith("PASSED")}
    assert "no code cells ran" in rows["words.ipynb"] and "no code cells" not in rows["code.ipynb"]
    table = {line.split("|")[2].strip(): line for line in summary.read_text(encoding="utf-8").splitlines()
             if line.startswith("| ✅")}
    assert "no code cells ran" in table["`words.ipynb`"] and "no code cells" not in table["`code.ipynb`"]


def test_failures_name_their_line_and_a_cell_number_once(project: Project, tmp_path: Path) -> None:
    (project.root / "steps.py").write_text(PERCENT, encoding="utf-8")
    project.write("first.ipynb", "1 / 0")
    summary = tmp_path / "summary.md"
    run = project.run("run", "steps.py", "first.ipynb", env={"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary)})
    assert run.code == 1
    closing = run.stdout[run.stdout.index("did not pass:"):]
    assert "steps.py:8  cell 3  AssertionError: no" in closing
    line = run.result("first.ipynb")["error"]["line"]
    assert f"first.ipynb:{line}  cell 1  ZeroDivisionError" in closing
    assert "code cell" not in run.stdout
    text = summary.read_text(encoding="utf-8")
    assert "<code>steps.py:8</code> failed in cell 3: AssertionError: no" in text
    assert f"<code>first.ipynb:{line}</code>" in text


def test_one_notebook_is_singular(project: Project) -> None:
    project.write("one.ipynb", "1")
    run = project.run("run")
    assert "nbci: 1 notebook," in run.stdout and "\n1 notebook: 1 passed in" in run.stdout


def test_a_downloaded_artifact_is_not_run_again(project: Project) -> None:
    project.write("source.ipynb", "1")
    first = project.run("run")
    assert first.code == 0
    artifact = project.root / "artifact"  # unzipped without the hidden marker
    shutil.copytree(project.root / "nbci-output", artifact, ignore=shutil.ignore_patterns(".*"))
    assert not (artifact / ".nbci-output").exists() and (artifact / "source.ipynb").exists()
    shutil.rmtree(project.root / "nbci-output")
    stray = project.root / "docs" / "nbci-output"  # named like the output folder, no results.json
    stray.mkdir(parents=True)
    shutil.copy(artifact / "source.ipynb", stray / "copy.ipynb")
    assert project.run("list").stdout.split() == ["source.ipynb"]
    again = project.run("run")
    assert again.code == 0 and again.results_paths() == ["source.ipynb"]
    named = project.run("list", "docs/nbci-output")
    assert named.stdout.split() == ["docs/nbci-output/copy.ipynb"]
    refused = project.run("run", "artifact/source.ipynb")
    assert refused.code == 2 and "a folder nbci writes its output to (it holds nbci's results.json)" in refused.stderr
    (artifact / "results.json").write_text(json.dumps({"notebooks": []}), encoding="utf-8")  # not nbci's
    assert "artifact/source.ipynb" in project.run("list").stdout.split()


def test_frozen_cells_are_not_run(project: Project) -> None:
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("x = 1"),
        nbformat.v4.new_code_cell("raise RuntimeError('frozen cells never run')",
                                  metadata={"run_control": {"frozen": True}, "editable": False, "deletable": False},
                                  outputs=[nbformat.v4.new_output("stream", text="old\n")]),
        nbformat.v4.new_code_cell("print(x)"),
    ])
    nb.metadata.kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(project.root / "frozen.ipynb"))
    run = project.run("run")
    assert run.code == 0, run.stdout
    assert run.result("frozen.ipynb")["cells_run"] == 2
    cells = run.executed("frozen.ipynb").cells
    assert cells[1].metadata["nbci"] == {"not_run": True, "frozen": True} and cells[1].outputs == []
    assert "nbci" not in cells[2].metadata and cells[2].outputs[0]["text"] == "1\n"


def test_the_html_report_says_where_it_is(project: Project) -> None:
    project.write("one.ipynb", "1")
    run = project.run("run", "--html")
    shown = [line for line in run.stdout.splitlines() if line.startswith("HTML report: ")]
    assert len(shown) == 1 and Path(shown[0][len("HTML report: "):]) == project.root / "nbci-output" / "index.html"
    assert (project.root / "nbci-output" / "index.html").is_file()
    assert "HTML report" not in project.run("run").stdout
    makefile = (Path(__file__).parent.parent / "Makefile").read_text(encoding="utf-8")
    assert "nbci run examples --html" in makefile
