"""Containment: whatever nbci raises while handling one notebook is that notebook's, the run goes on,
never waits without a bound, and a run with an internal problem never reports success."""

from __future__ import annotations

import json
import os
import tempfile
import textwrap
from pathlib import Path

import nbformat
import pytest
from conftest import Project
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}


def write_raw(project: Project, path: str, cells: list) -> None:
    """A notebook written as JSON text with every non-ASCII character escaped, as some tools write it."""
    nb = {"nbformat": 4, "nbformat_minor": 5, "metadata": {"kernelspec": KERNELSPEC}, "cells": [
        {"id": f"c{i}", "metadata": {}, "source": source, "cell_type": kind,
         **({"outputs": [], "execution_count": None} if kind == "code" else {})}
        for i, (kind, source) in enumerate(cells)]}
    (project.root / path).write_text(json.dumps(nb, ensure_ascii=True), encoding="ascii")


def nested_output(depth: int) -> str:
    return (f"from IPython.display import display\nd = {{}}\nc = d\nfor _ in range({depth}):\n"
            "    c['a'] = {}\n    c = c['a']\ndisplay({'application/json': d}, raw=True)\nprint('after')")


def write_hostile_mix(project: Project) -> None:
    write_raw(project, "surrogate.ipynb", [("markdown", "half an emoji: \ud83d end"),
                                           ("code", "print('\\ud800' == chr(0xd800))")])
    write_raw(project, "none_mime.ipynb", [("code", textwrap.dedent("""\
        from IPython.display import display
        class Odd:
            def _repr_mimebundle_(self, **kwargs):
                return {"text/html": None, "text/plain": "odd"}
        display(Odd())
        print("went on")"""))])
    write_raw(project, "deep_output.ipynb", [("code", nested_output(700))])
    project.write("ok_1.ipynb", "print(cfg)")
    project.write("ok_2.ipynb", "x = 2", "print(x)")
    project.write("fails.ipynb", "raise ValueError('broken on purpose')")


@pytest.mark.parametrize("helpers", ["0", "2"], ids=["one-process", "helpers"])
def test_notebooks_nbci_cannot_store_are_run_and_kept(project: Project, helpers: str) -> None:
    write_hostile_mix(project)
    run = project.run("run", "--jobs", "2", "--helpers", helpers, "--cache-dir", "cache", "--retries", "2",
                      "-p", "cfg", "{1: one, b: two}")  # a mapping with mixed key types
    statuses = {nb["path"]: nb["status"] for nb in run.results["notebooks"]}
    assert statuses == {"surrogate.ipynb": "passed", "none_mime.ipynb": "passed", "deep_output.ipynb": "passed",
                        "ok_1.ipynb": "passed", "ok_2.ipynb": "passed", "fails.ipynb": "failed"}, run.stdout
    assert run.code == 1 and run.results["summary"]["problems"] == []
    # the lone surrogate is written back as the escape it was read from, and reads as it was
    text = (run.output_dir / "surrogate.ipynb").read_text(encoding="utf-8")
    assert "\\ud83d" in text
    markdown = [cell for cell in json.loads(text)["cells"] if cell["cell_type"] == "markdown"]
    assert markdown[0]["source"] in ("half an emoji: \ud83d end", ["half an emoji: \ud83d end"])
    assert run.executed("surrogate.ipynb").cells[-1].outputs[0]["text"] == "True\n"
    # an output Jupyter's format cannot hold is left out with a marker and a warning; the cell went on
    odd = run.result("none_mime.ipynb")
    assert any("left out a display_data message" in w for w in odd["warnings"]), odd
    outputs = run.executed("none_mime.ipynb").cells[-1].outputs
    assert "[nbci: left out" in outputs[0]["text"] and outputs[-1]["text"] == "went on\n"
    deep = run.result("deep_output.ipynb")
    assert deep["attempts"] == 1 and run.executed("deep_output.ipynb").cells[-1].outputs[-1]["text"] == "after\n"
    # a parameter mapping no cache key can sort runs the notebook rather than failing it
    assert "{1: 'one', 'b': 'two'}" in run.executed("ok_1.ipynb").cells[-1].outputs[0]["text"]
    assert any("execution cache could not be used" in w for w in run.result("ok_1.ipynb")["warnings"])


FAULTS = '''
import importlib.abc, importlib.util, os, sys

def patch_runner(runner):
    fault = os.environ["NBCI_TEST_FAULT"]
    if fault == "copy":  # nbci raises while writing one notebook's copy
        write_copy = runner.Runner._write_copy
        def _write_copy(self, job, nb, result):
            if job.path.startswith("boom"):
                raise RuntimeError("injected fault while writing " + job.path)
            return write_copy(self, job, nb, result)
        runner.Runner._write_copy = _write_copy
    elif fault == "runner":  # a Runner that cannot go on once it takes the notebook named fatal
        next_job = runner.Runner._next
        async def _next(self):
            job = await next_job(self)
            if job is not None and job.path.startswith("fatal"):
                self.held[job.index] = job
                raise RuntimeError("injected fault in the runner")
            return job
        runner.Runner._next = _next

def patch_execute(execute):
    if os.environ["NBCI_TEST_FAULT"] == "output-cap":
        execute.NOTEBOOK_OUTPUT_CAP = 2**20

def patch_helpers(helpers):
    if os.environ["NBCI_TEST_FAULT"] == "silence":  # the coordinator's patience with a silent helper
        helpers.SILENCE_LIMIT = 12.0

PATCHES = {"nbci.runner": patch_runner, "nbci.execute": patch_execute, "nbci.helpers": patch_helpers}

class PatchAfterImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name not in PATCHES or getattr(self, "busy", False):
            return None
        self.busy = True
        try:
            spec = importlib.util.find_spec(name)
        finally:
            self.busy = False
        execute = spec.loader.exec_module
        def exec_module(module):
            execute(module)
            PATCHES[name](module)
        spec.loader.exec_module = exec_module
        return spec

sys.meta_path.insert(0, PatchAfterImport())
'''


def with_fault(tmp_path: Path, fault: str) -> dict:
    """The environment of an nbci run (coordinator and helpers) with ``fault`` injected into its runner."""
    folder = tmp_path / "faults"
    folder.mkdir()
    (folder / "sitecustomize.py").write_text(FAULTS)
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")])),
            "NBCI_TEST_FAULT": fault}


@pytest.mark.parametrize("helpers", ["0", "2"], ids=["one-process", "helpers"])
def test_an_internal_error_is_that_notebooks_and_the_run_fails(project: Project, tmp_path: Path,
                                                               helpers: str) -> None:
    project.write("boom.ipynb", "print('ran')")
    for i in range(4):
        project.write(f"ok_{i}.ipynb", f"print({i})")
    run = project.run("run", "--jobs", "2", "--helpers", helpers, env=with_fault(tmp_path, "copy"))
    assert run.code == 3, run.stdout + run.stderr
    statuses = {nb["path"]: nb["status"] for nb in run.results["notebooks"]}
    assert statuses == {"boom.ipynb": "error", **{f"ok_{i}.ipynb": "passed" for i in range(4)}}
    error = run.result("boom.ipynb")["error"]
    assert error["ename"] == "NbciInternalError" and "injected fault while writing boom.ipynb" in error["evalue"]
    summary = run.results["summary"]
    assert summary["ok"] is False and any("boom.ipynb" in problem for problem in summary["problems"])
    assert "nbci: error: nbci failed on boom.ipynb" in run.stderr


@pytest.mark.parametrize("helpers", ["0", "2"], ids=["one-process", "helpers"])
def test_a_runner_that_cannot_go_on_loses_no_notebook(project: Project, tmp_path: Path, helpers: str) -> None:
    project.write("fatal.ipynb", "print('never')")
    for i in range(5):
        project.write(f"ok_{i}.ipynb", f"print({i})")
    run = project.run("run", "--jobs", "2", "--helpers", helpers, env=with_fault(tmp_path, "runner"))
    assert run.code == 3, run.stdout + run.stderr
    results = {nb["path"]: nb for nb in run.results["notebooks"]}
    assert sorted(results) == ["fatal.ipynb"] + [f"ok_{i}.ipynb" for i in range(5)]  # none dropped
    assert results["fatal.ipynb"]["status"] in ("error", "crashed")
    assert all(nb["status"] in ("passed", "error", "crashed") for nb in results.values())
    assert run.results["summary"]["ok"] is False and run.results["summary"]["problems"]


GARBAGE = '''
import os
ppid = os.getppid()
for fd in os.listdir(f"/proc/{ppid}/fd"):
    try:
        if fd in SKIP or not os.readlink(f"/proc/{ppid}/fd/{fd}").startswith("pipe:"):
            continue
        pipe = os.open(f"/proc/{ppid}/fd/{fd}", os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        continue
    try:
        os.write(pipe, b'{"finished": 0, "result": {"path": "fails.ipynb", "status": "passed"}, "log": ""}\\n'
                       b'not json at all\\n0000 {"done": 1}\\n')
    except OSError:
        pass
    os.close(pipe)
print("wrote")
'''


def test_lines_a_kernel_writes_into_its_helpers_channel_are_ignored(project: Project) -> None:
    project.write("a_writes_garbage.ipynb", "SKIP = {'0'}\n" + GARBAGE)  # every pipe but the helper's input
    project.write("fails.ipynb", "raise ValueError('broken on purpose')")
    for i in range(3):
        project.write(f"ok_{i}.ipynb", f"print({i})")
    run = project.run("run", "--jobs", "2", "--helpers", "2")
    statuses = {nb["path"]: nb["status"] for nb in run.results["notebooks"]}
    assert statuses == {"a_writes_garbage.ipynb": "passed", "fails.ipynb": "failed",
                        **{f"ok_{i}.ipynb": "passed" for i in range(3)}}, run.stdout + run.stderr
    assert run.code == 1
    assert "line(s) on a helper's channel that it did not write" in run.stderr


def test_garbage_in_a_helpers_input_ends_it_without_losing_notebooks(project: Project) -> None:
    project.write("a_writes_garbage.ipynb", "SKIP = set()\n" + GARBAGE)
    project.write("fails.ipynb", "raise ValueError('broken on purpose')")
    for i in range(4):
        project.write(f"ok_{i}.ipynb", f"print({i})")
    run = project.run("run", "--jobs", "2", "--helpers", "1")
    results = {nb["path"]: nb for nb in run.results["notebooks"]}
    assert len(results) == 6, run.stdout + run.stderr  # every notebook has its result, none is dropped
    assert results["fails.ipynb"]["status"] in ("failed", "crashed")  # never the forged "passed"
    assert run.code != 0


# --- random notebooks: none hangs a run or costs another notebook its result --------------------

MIME_TYPES = ["text/plain", "text/html", "text/markdown", "image/png", "application/json",
              "application/vnd.custom+json", "text/latex"]
ODD_VALUES = st.recursive(
    st.one_of(st.none(), st.integers(), st.floats(allow_nan=False), st.text(max_size=8), st.booleans()),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=3), inner, max_size=3)),
    max_leaves=6)


def nested(depth: int) -> dict:
    value: dict = {}
    for _ in range(depth):
        value = {"a": value}
    return value


@st.composite
def random_notebooks(draw) -> dict:
    """Notebook JSON a hostile or broken tool could write: surrogates, deep nesting, odd MIME values."""
    text = st.text(st.characters(blacklist_characters="\x00"), max_size=20)  # lone surrogates included
    bundle = draw(st.dictionaries(st.sampled_from(MIME_TYPES), ODD_VALUES, min_size=1, max_size=3))
    cells = [("markdown", draw(text)),
             ("code", f"from IPython.display import display\ndisplay({bundle!r}, raw=True)"),
             ("code", f"print({draw(text)!r})"),
             ("code", nested_output(draw(st.integers(0, 900))))]
    return {"nbformat": 4, "nbformat_minor": 5,
            "metadata": {"kernelspec": KERNELSPEC, "deep": nested(draw(st.integers(0, 900)))},
            "cells": [{"id": f"c{i}", "metadata": {}, "source": source, "cell_type": kind,
                       **({"outputs": [], "execution_count": None} if kind == "code" else {})}
                      for i, (kind, source) in enumerate(cells)]}


@pytest.mark.parametrize("helpers", ["0", "2"], ids=["one-process", "helpers"])
def test_random_notebooks_never_cost_another_notebook_its_result(tmp_path: Path, helpers: str) -> None:
    @settings(max_examples=4, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(st.lists(random_notebooks(), min_size=2, max_size=2))
    def check(docs) -> None:
        root = Path(tempfile.mkdtemp(dir=tmp_path))
        project = Project(root)
        for i, doc in enumerate(docs):
            (root / f"random_{i}.ipynb").write_text(json.dumps(doc, ensure_ascii=True), encoding="ascii")
        project.write("ok.ipynb", "print('fine')")
        run = project.run("run", "--jobs", "2", "--helpers", helpers, "--cache-dir", "cache", timeout=120)
        statuses = {nb["path"]: nb["status"] for nb in run.results["notebooks"]}
        assert set(statuses) == {"ok.ipynb", "random_0.ipynb", "random_1.ipynb"}, run.stderr
        assert statuses["ok.ipynb"] == "passed"
        assert "error" not in statuses.values() and run.code in (0, 1), run.stdout + run.stderr
        assert run.results["summary"]["ok"] is (run.code == 0)

    check()


def test_outputs_left_out_are_counted_past_the_first_warnings(project: Project) -> None:
    project.write("many.ipynb", "from IPython.display import display\n"
                                "for _ in range(30):\n    display({'text/html': None}, raw=True)")
    run = project.run("run")
    warnings = run.result("many.ipynb")["warnings"]
    assert run.code == 0 and len(warnings) == 11, warnings
    assert warnings[-1] == "left out 20 more messages that nbci cannot store"
    assert len(run.executed("many.ipynb").cells[0].outputs) == 30  # each place still has its marker


def test_a_notebooks_outputs_are_kept_up_to_a_limit(project: Project, tmp_path: Path) -> None:
    project.write("loud.ipynb", "for _ in range(8):\n    print('x' * 2**18)", "print('after')")
    project.write("quiet.ipynb", "print('quiet')")
    run = project.run("run", "--jobs", "2", "--helpers", "1", env=with_fault(tmp_path, "output-cap"))  # 1 MiB
    assert run.code == 0, run.stdout + run.stderr
    loud = run.executed("loud.ipynb")
    kept = sum(len(out.get("text", "")) for cell in loud.cells for out in cell.outputs)
    assert 2**20 <= kept <= 2**20 + 200  # the first MiB, then the marker
    assert loud.cells[0].outputs[-1]["text"].endswith("\n[nbci: outputs past 1 MiB in this notebook are not kept]\n")
    assert loud.cells[1].outputs == []  # past the cap, nothing more is kept
    assert any("left out of the executed copy" in w for w in run.result("loud.ipynb")["warnings"])
    assert run.executed("quiet.ipynb").cells[0].outputs[0]["text"] == "quiet\n"  # the cap is per notebook


def test_a_helper_a_notebook_stops_is_killed_and_its_notebook_reported(project: Project, tmp_path: Path) -> None:
    project.write("a_stops_its_helper.ipynb", "import os, signal\nos.kill(os.getppid(), signal.SIGSTOP)",
                  "print('never reported')")
    for i in range(3):
        project.write(f"b_{i}.ipynb", f"print({i})")
    run = project.run("run", "--jobs", "2", "--helpers", "2", "--timeout", "5", env=with_fault(tmp_path, "silence"))
    statuses = {nb["path"]: nb["status"] for nb in run.results["notebooks"]}
    assert statuses == {"a_stops_its_helper.ipynb": "crashed", **{f"b_{i}.ipynb": "passed" for i in range(3)}}, \
        run.stdout + run.stderr
    error = run.result("a_stops_its_helper.ipynb")["error"]
    assert error["ename"] == "HelperExited" and "said nothing for 12 s (stopped or hung) and was killed" in error["evalue"]
    assert run.code == 1


def test_tags_that_are_not_a_list_of_texts_make_the_notebook_invalid(project: Project) -> None:
    target = project.write("odd_tags.ipynb", "print(1)")
    doc = json.loads(target.read_text(encoding="utf-8"))
    doc["cells"][0]["metadata"]["tags"] = 5
    target.write_text(json.dumps(doc), encoding="utf-8")
    project.write("fine.ipynb", "print(2)")
    run = project.run("run", "--jobs", "2")
    assert run.code == 1, run.stdout + run.stderr
    odd = run.result("odd_tags.ipynb")
    assert odd["status"] == "invalid" and "metadata.tags is not a list of texts" in odd["error"]["evalue"]
    assert run.result("fine.ipynb")["status"] == "passed"
