"""nbci.child: hostile input worked on in a child process that holds no runner files and never outlives a stop."""

from __future__ import annotations

import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import List

import nbformat
import psutil
import pytest

from nbci import child
from nbci.outputs import CheckOptions, Mask, committed_cells

SLOW = Mask("(a+)+$", "")  # backtracks for ever on a run of a's that ends in something else


def slow_check_arguments() -> List[object]:
    """``nbci.outputs:child_call`` arguments whose mask never finishes."""
    committed, fresh = ([nbformat.v4.new_code_cell("x", execution_count=1, outputs=[nbformat.v4.new_output(
        "stream", name="stdout", text="a" * 60 + end)])] for end in "bc")
    options = asdict(CheckOptions("warn", masks=(SLOW,), default_masks=False))
    return ["check_outputs", committed_cells(committed), committed_cells(fresh), options]


def test_a_child_holds_no_runner_files_and_kill_all_ends_it_at_once(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GITHUB_ENV", str(tmp_path / "github_env"))
    monkeypatch.setenv("ACTIONS_RUNTIME_TOKEN", "runtime-token")
    outcome: List[BaseException] = []

    def call() -> None:
        try:
            child.call("nbci.outputs:child_call", slow_check_arguments(), 120)
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=call)
    worker.start()
    deadline = time.monotonic() + 60
    while not child.LIVE and time.monotonic() < deadline:  # bounded: the child starts within seconds
        worker.join(0.05)
    [running] = list(child.LIVE)
    environ = psutil.Process(running.pid).environ()
    assert "GITHUB_ENV" not in environ and "ACTIONS_RUNTIME_TOKEN" not in environ
    child.kill_all()
    worker.join(30)
    assert not worker.is_alive() and isinstance(outcome[0], child.ChildFailed)
    assert not psutil.pid_exists(running.pid) or psutil.Process(running.pid).status() == psutil.STATUS_ZOMBIE


def test_a_child_past_its_time_is_killed_and_says_so() -> None:
    with pytest.raises(child.ChildTimeout, match="took over 2 s"):
        child.call("nbci.outputs:child_call", slow_check_arguments(), 2)
    assert not child.LIVE


def nbci_children(process: psutil.Process) -> List[psutil.Process]:
    """The ``nbci.child`` processes below ``process`` (others may be exiting: skipped)."""
    found = []
    for candidate in process.children(recursive=True):
        try:
            if "nbci.child" in " ".join(candidate.cmdline()):
                found.append(candidate)
        except psutil.Error:
            continue
    return found


def test_sigterm_during_a_slow_mask_ends_the_child_and_nbci_without_waiting_for_it(project) -> None:
    from test_outputs import cell, commit, stdout

    commit(project.root, "slow.ipynb", cell("print('a' * 40 + '!')", stdout("x\n")))
    (project.root / ".nbci.yml").write_text(
        'notebooks:\n  - glob: "slow.ipynb"\n    output-masks:\n      - {regex: "(a+)+$", replace: ""}\n')
    proc = project.popen("run", "--check-outputs", "warn")
    nbci = psutil.Process(proc.pid)
    deadline = time.monotonic() + 120
    while not nbci_children(nbci) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # polling for the child to exist, bounded; no race is won by it
    [masking] = nbci_children(nbci)
    proc.terminate()
    proc.communicate(timeout=15)  # the mask's own limit is 20 s: nbci must not wait for it
    assert proc.returncode != 0
    assert not masking.is_running() or masking.status() == psutil.STATUS_ZOMBIE


def test_masks_that_run_the_child_out_of_memory_fail_their_notebook_not_nbci(project) -> None:
    from test_outputs import cell, commit, stdout

    commit(project.root, "big.ipynb", cell("print('x' * 100000)", stdout("y\n")))
    (project.root / ".nbci.yml").write_text("defaults:\n  output-masks:\n    - {regex: 'x', replace: '%s'}\n"
                                            % ("Y" * 50000))
    run = project.run("run", "--check-outputs", "warn")
    assert run.code == 1, run.stdout + run.stderr
    result = run.result("big.ipynb")
    assert (result["status"], result["error"]["ename"]) == ("failed", "OutputMasksFailed")
    assert "MemoryError" in result["error"]["evalue"] and run.results["summary"]["problems"] == []
