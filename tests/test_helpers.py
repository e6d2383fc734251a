"""Helper processes: many jobs are driven from several processes, with the same results and reports."""

from __future__ import annotations

from typing import Dict

import pytest
from conftest import Project
from test_faults import wait_gone

from nbci.schedule import helper_sizes, helper_sizes_of


@pytest.mark.parametrize("jobs, sizes", [(1, []), (2, [2]), (4, [4]), (5, [3, 2]), (6, [3, 3]), (16, [4, 4, 4, 4])])
def test_workers_are_split_into_even_groups(jobs: int, sizes: list) -> None:
    assert helper_sizes(jobs) == sizes
    assert sum(sizes) == (jobs if sizes else 0)


def test_helpers_option_fixes_the_number_of_processes() -> None:
    assert helper_sizes_of(5, 0) == [] and helper_sizes_of(5, 2) == [3, 2] and helper_sizes_of(2, 8) == [1, 1]


def write_mix(project: Project) -> None:
    for i in range(4):
        project.write(f"ok_{i}.ipynb", f"x = {i}", "print('value', x * 2)")
    project.write("fails.ipynb", "a = 1", "raise ValueError('broken on purpose')")
    project.write("slow.ipynb", "import time\ntime.sleep(1.5)", "print('slept')")


def outcome(run) -> Dict[str, tuple]:
    return {nb["path"]: (nb["status"], nb["error"] and (nb["error"]["ename"], nb["error"]["cell_index"]))
            for nb in run.results["notebooks"]}


def test_helpers_and_one_process_give_the_same_results(project: Project) -> None:
    write_mix(project)
    one = project.run("run", "--jobs", "4", "--helpers", "0", "--output-dir", "one", "--heartbeat", "0.5")
    many = project.run("run", "--jobs", "4", "--helpers", "2", "--output-dir", "many", "--heartbeat", "0.5")
    assert one.code == many.code == 1, many.stderr
    assert outcome(many) == outcome(one)
    assert outcome(many)["fails.ipynb"] == ("failed", ("ValueError", 1))
    assert [nb["path"] for nb in many.results["notebooks"]] == sorted(outcome(one))  # discovery order
    for i in range(4):
        assert many.executed(f"ok_{i}.ipynb").cells[1].outputs[0]["text"] == f"value {i * 2}\n"
    assert one.results["summary"]["helpers_cpu"] is None and many.results["summary"]["helpers_cpu"] > 0
    for run in (one, many):
        assert "slow.ipynb: cell 1 `import time`" in run.stdout  # heartbeats reach the console
        assert "FAILED           fails.ipynb" in run.stdout and "ValueError: broken on purpose" in run.stdout
        assert "Traceback" not in run.stderr


def test_a_helper_that_dies_fails_only_its_notebook(project: Project) -> None:
    project.write("a_kills_its_driver.ipynb",
                  "import os, signal\nos.kill(int(os.environ['JPY_PARENT_PID']), signal.SIGKILL)",
                  "import time\ntime.sleep(30)")
    for i in range(5):
        project.write(f"b_{i}.ipynb", f"print({i})")
    run = project.run("run", "--jobs", "2", "--helpers", "2")
    assert run.code == 1, run.stderr
    statuses = {nb["path"]: nb["status"] for nb in run.results["notebooks"]}
    assert statuses == {"a_kills_its_driver.ipynb": "crashed", **{f"b_{i}.ipynb": "passed" for i in range(5)}}
    error = run.result("a_kills_its_driver.ipynb")["error"]
    assert error["ename"] == "HelperExited" and "exited (code -9)" in error["evalue"]


def test_helpers_leave_no_kernel_behind(project: Project) -> None:
    for i in range(4):
        project.write(f"n{i}.ipynb", "import subprocess, sys",
                      "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])",
                      f"open('n{i}.pid', 'w').write(str(child.pid))")
    run = project.run("run", "--jobs", "4", "--helpers", "2")
    assert run.code == 0, run.stderr
    daemons = [int((project.root / f"n{i}.pid").read_text()) for i in range(4)]
    assert wait_gone(daemons) == []  # each helper kills what its notebooks left running
