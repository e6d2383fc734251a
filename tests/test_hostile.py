"""Hostile notebooks, names, files and inputs: nothing they hold steers the job, hangs the run,
misleads the verdict or reaches outside the repository. Every test runs nbci and real kernels.

The job log is read the way the runner reads it (``runner_log``), the job summary with a
CommonMark parser (markdown-it-py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import nbformat
import psutil
import pytest
from markdown_it import MarkdownIt

from conftest import Project, nbci_env
from runner_log import live_commands

LINUX = sys.platform.startswith("linux")


def run_merged(project: Project, *args: str, env: Optional[Dict[str, str]] = None,
               timeout: float = 120) -> subprocess.CompletedProcess:
    """nbci with stdout and stderr in one pipe, as the runner's log sees them."""
    return subprocess.run([sys.executable, "-m", "nbci", *args], cwd=project.root, env=nbci_env(env),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, encoding="utf-8",
                          errors="replace", timeout=timeout)


def github_env(project: Project, tmp_path: Path) -> Dict[str, str]:
    return {"GITHUB_ACTIONS": "true", "GITHUB_OUTPUT": str(tmp_path / "gh_output"),
            "GITHUB_STEP_SUMMARY": str(tmp_path / "gh_summary.md"), "GITHUB_WORKSPACE": str(project.root)}


def results(project: Project, output_dir: str = "nbci-output") -> Dict[str, dict]:
    data = json.loads((project.root / output_dir / "results.json").read_text(encoding="utf-8"))
    return {nb["path"]: nb for nb in data["notebooks"]}


# --- the job log --------------------------------------------------------------------------------


INJECTED_ERROR = 'raise ValueError("x\\n::error title=spoofed::MARK-evalue\\n  ::add-mask::MARK-mask\\n##[error]MARK-old")'


def test_nothing_a_notebook_holds_is_a_live_command(project: Project, tmp_path: Path) -> None:
    project.write("a\n::error title=spoofed::MARK-name.ipynb", "1 / 0")
    project.write("b ##[stop-commands]MARK-stop.ipynb", "1 / 0")
    project.write("c.ipynb", INJECTED_ERROR)
    project.write("d.ipynb", "# ##[warning]MARK-heartbeat\nimport time\ntime.sleep(1.5)")
    project.write("e.ipynb", "import os\nos.write(1, b'\\n::error::MARK-fd1\\n##[error]MARK-fd1-old\\n')\n"
                             "os.write(2, b'\\n::warning::MARK-fd2\\n')\nprint('::error::MARK-print')")
    log = run_merged(project, "run", "--jobs", "2", "--heartbeat", "0.5", "--timeout", "60",
                     env=github_env(project, tmp_path))
    assert log.returncode == 1, log.stdout
    live = live_commands(log.stdout)
    assert not [c.line for c in live if "MARK" in c.line and c.name not in ("group", "error")]
    for command in live:  # nbci's own group titles and annotations carry names, escaped
        assert "\n" not in command.data and "##[" not in command.data
    errors = [c for c in live if c.name == "error"]
    assert len(errors) == 3  # the three failing notebooks, each annotated by nbci
    assert all(c.line.startswith("::error file=") for c in errors)
    assert "MARK-heartbeat" in log.stdout and "MARK-fd1" in log.stdout  # shown, not obeyed


def test_kernel_output_is_kept_per_notebook_and_bounded(project: Project, tmp_path: Path) -> None:
    project.write("noisy.ipynb", "import os\nos.write(2, b'kernel says hi\\n')\nos.write(1, b'z' * 300000)\n1/0")
    run = project.run("run", "--timeout", "60")
    result = run.result("noisy.ipynb")
    assert result["kernel_output"].startswith("kernel says hi\n")
    assert len(result["kernel_output"]) < 70_000 and "more bytes of kernel output cut" in result["kernel_output"]
    assert "kernel says hi" in run.stdout  # in the failure section, not straight from the kernel
    assert "z" * 1000 not in run.stderr


def test_console_lines_and_stored_messages_are_bounded(project: Project) -> None:
    project.write("huge.ipynb", "raise ValueError('m' * 10_000_000)")
    run = project.run("run", "--timeout", "60")
    assert run.code == 1
    assert max(len(line) for line in run.stdout.splitlines()) < 2100
    error = run.result("huge.ipynb")["error"]
    assert 10_000 <= len(error["evalue"]) < 10_100 and "more characters" in error["evalue"]
    assert sum(map(len, error["traceback"])) < 110_000
    assert (run.output_dir / "junit.xml").stat().st_size < 300_000
    assert (run.output_dir / "results.json").stat().st_size < 300_000


# --- the job summary ----------------------------------------------------------------------------


def test_summary_shows_notebook_text_only_as_text(project: Project, tmp_path: Path) -> None:
    project.write("x\n\n# MARK heading | col.ipynb", "1/0")
    project.write("y.ipynb", 'raise ValueError("x\\n\\n## All notebooks passed ✅\\n\\n'
                             '![t](https://example.invalid/t.png) [l](https://example.invalid/) <img src=x>")')
    env = github_env(project, tmp_path)
    assert run_merged(project, "run", "--timeout", "60", env=env).returncode == 1
    text = (tmp_path / "gh_summary.md").read_text(encoding="utf-8")
    tokens = MarkdownIt("commonmark").enable("table").parse(text)
    flat = tokens + [child for token in tokens for child in (token.children or [])]
    headings = [tokens[i + 1].content for i, t in enumerate(tokens) if t.type == "heading_open"]
    assert headings == ["❌ nbci: 2 of 2 notebooks did not pass (" + headings[0].split("(")[1], "Failures"]
    assert not [t for t in flat if t.type in ("image", "link_open")]
    for token in flat:
        if token.type in ("html_block", "html_inline"):
            assert "<img" not in token.content and "MARK" not in token.content.split("<code>")[0]
    rows = [t for t in tokens if t.type == "tr_open"]
    assert len(rows) == 3  # the header and one row per notebook: no row broken by a newline or a '|'


# --- what a kernel can reach --------------------------------------------------------------------


def test_kernels_do_not_see_the_runners_files_or_tokens(project: Project, tmp_path: Path) -> None:
    project.write("env.ipynb", "import os, json\n"
                               "print(json.dumps(sorted(k for k in os.environ if k.startswith(('GITHUB_', 'ACTIONS_')))))")
    env = github_env(project, tmp_path)
    env.update({"GITHUB_ENV": str(tmp_path / "env"), "GITHUB_PATH": str(tmp_path / "path"),
                "GITHUB_STATE": str(tmp_path / "state"), "ACTIONS_RUNTIME_TOKEN": "secret",
                "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "secret"})
    assert run_merged(project, "run", env=env).returncode == 0
    seen = json.loads(nbformat.read(str(project.root / "nbci-output" / "env.ipynb"), 4).cells[0].outputs[0]["text"])
    assert seen == ["GITHUB_ACTIONS", "GITHUB_WORKSPACE"]


@pytest.mark.parametrize("start", ["spawn", "fork"])
@pytest.mark.skipif(not LINUX, reason="a subreaper needs Linux")
def test_no_process_outlives_its_notebook(project: Project, start: str) -> None:
    daemon = ("import subprocess\nsubprocess.run('setsid nohup sleep 1000 >/dev/null 2>&1 & echo $! > {name}.pid', "
              "shell=True, check=True)")
    project.write("a_daemon.ipynb", daemon.format(name="a"))
    # runs after a_daemon ended (one job): its daemon must already be gone
    # the process may vanish between any two looks at /proc: gone is gone, however it is seen
    project.write("b_check.ipynb", "import time, pathlib\npid = int(pathlib.Path('a.pid').read_text())\n"
                                   "def alive():\n"
                                   "    try:\n"
                                   "        return open(f'/proc/{pid}/stat').read().split()[2] != 'Z'\n"
                                   "    except (FileNotFoundError, ProcessLookupError):\n"
                                   "        return False\n"
                                   "deadline = time.monotonic() + 20\n"
                                   "while alive():\n"
                                   "    assert time.monotonic() < deadline, 'the daemon outlived its notebook'\n"
                                   "    time.sleep(0.05)")
    project.write("c_daemon.ipynb", daemon.format(name="c"))
    order = {"notebooks": [{"path": p, "status": "passed", "duration": d}
                           for p, d in (("a_daemon.ipynb", 3), ("b_check.ipynb", 2), ("c_daemon.ipynb", 1))]}
    (project.root / "order.json").write_text(json.dumps(order))
    run = project.run("run", "a_daemon.ipynb", "b_check.ipynb", "c_daemon.ipynb", "--jobs", "1", "--kernel-start", start,
                      "--durations", "order.json", env={"PYTHONHASHSEED": "0"})
    assert run.code == 0, run.stdout + run.stderr
    for name in ("a", "c"):
        pid = int((project.root / f"{name}.pid").read_text())
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_input_fails_at_once(project: Project) -> None:
    project.write("asks.ipynb", "name = input('name? ')")
    started = time.monotonic()
    run = project.run("run", "--timeout", "0", timeout=60)
    assert run.code == 1 and time.monotonic() - started < 30
    assert run.result("asks.ipynb")["error"]["ename"] == "StdinNotImplementedError"


# --- discovery and the file tree ----------------------------------------------------------------


def test_link_loops_end_and_each_notebook_runs_once(project: Project) -> None:
    project.write("nbs/a.ipynb", "1")
    os.symlink(".", project.root / "loop")
    os.symlink("..", project.root / "nbs" / "up")
    listed = project.run("list", timeout=60)
    assert listed.code == 0 and listed.stdout.split() == ["nbs/a.ipynb"]
    run = project.run("run", timeout=60)
    assert run.results_paths() == ["nbs/a.ipynb"]


def test_links_out_of_the_repository_are_not_followed_or_read(project: Project, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    Project(outside).write("secret.ipynb", "print('outside')")
    os.symlink(outside, project.root / "linked")
    os.symlink("/etc/passwd", project.root / "passwd.ipynb")
    project.write("ok.ipynb", "1")
    run = project.run("run", timeout=60)
    assert run.code == 1
    assert sorted(run.results_paths()) == ["ok.ipynb", "passwd.ipynb"]
    error = run.result("passwd.ipynb")["error"]["evalue"]
    assert "outside the working directory" in error and "root:" not in error
    assert not (run.output_dir / "linked").exists()
    named = project.run("run", "linked", timeout=60)
    assert named.code == 2 and "outside the working directory" in named.stderr


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_named_like_a_notebook_is_refused_at_once(project: Project) -> None:
    os.mkfifo(project.root / "x.ipynb")
    project.write("ok.ipynb", "1")
    run = project.run("run", "x.ipynb", "ok.ipynb", timeout=60)
    assert run.code == 1
    assert "not a regular file" in run.result("x.ipynb")["error"]["evalue"]
    assert run.result("ok.ipynb")["status"] == "passed"


def test_output_links_are_never_written_through(project: Project, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_text("keep")
    project.write("a.ipynb", "1")
    project.write("sub/b.ipynb", "2")
    out = project.root / "nbci-output"
    out.mkdir()
    os.symlink(outside / "victim", out / "junit.xml")
    os.symlink(outside / "victim", out / "a.ipynb")
    os.symlink(outside, out / "sub")
    run = project.run("run", "a.ipynb", "sub/b.ipynb", timeout=60)
    assert (outside / "victim").read_text() == "keep" and sorted(os.listdir(outside)) == ["victim"]
    assert not (out / "junit.xml").is_symlink() and not (out / "a.ipynb").is_symlink()
    assert run.result("a.ipynb")["status"] == "passed"
    b = run.result("sub/b.ipynb")
    assert b["status"] == "failed" and b["error"]["ename"] == "OutputWriteError" and "symbolic link" in b["error"]["evalue"]
    os.rename(out, project.root / "elsewhere")
    os.symlink(outside, out)  # a committed output folder that is a link
    refused = project.run("run", "a.ipynb", timeout=60)
    assert refused.code == 2 and "symbolic link" in refused.stderr
    assert sorted(os.listdir(outside)) == ["victim"]


def test_output_dir_never_overwrites_or_hides_sources(project: Project) -> None:
    source = project.write("src/a.ipynb", "1")
    before = source.read_bytes()
    here = project.run("run", "--output-dir", ".")
    assert here.code == 2 and "overwrite" in here.stderr and len(here.stderr.splitlines()) == 1
    inner = project.run("run", "src/a.ipynb", "--output-dir", "src")
    assert inner.code == 2 and "src/a.ipynb" in inner.stderr
    assert source.read_bytes() == before and not (project.root / "src" / "results.json").exists()


def test_earlier_output_is_never_run_and_list_agrees_with_run(project: Project) -> None:
    project.write("a.ipynb", "1")
    assert project.run("run").code == 0  # leaves nbci-output/a.ipynb
    other = project.run("run", "--output-dir", "other")
    assert other.code == 0 and [nb["path"] for nb in other.results["notebooks"]] == ["a.ipynb"]
    listed = project.run("list", "--output-dir", "other").stdout.split()
    sharded = project.run("run", "--shard", "1/1", "--output-dir", "third")
    assert listed == [nb["path"] for nb in sharded.results["notebooks"]] == ["a.ipynb"]
    named = project.run("run", "nbci-output/a.ipynb", "--output-dir", "fourth")
    assert named.code == 2 and "nbci writes its output" in named.stderr


# --- verdicts and executed copies ---------------------------------------------------------------


@pytest.mark.parametrize("exit_cell", ["import sys\nsys.exit(0)", "exit()", "raise SystemExit", "sys.exit(None)"])
def test_a_clean_exit_ends_the_notebook_as_passed(project: Project, exit_cell: str) -> None:
    project.write("ends.ipynb", "import sys\nprint('ran')", exit_cell, "print('never')")
    run = project.run("run", "--timeout", "60")
    result = run.result("ends.ipynb")
    assert run.code == 0 and result["status"] == "passed" and result["stopped_at"] == 1
    copy = run.executed("ends.ipynb")
    assert copy.metadata["nbci"]["stopped_at"] == 1
    assert copy.cells[2].outputs == [] and copy.cells[2].metadata["nbci"] == {"not_run": True}


def test_a_non_zero_exit_fails_with_its_code(project: Project) -> None:
    project.write("exits.ipynb", "import sys\nsys.exit(3)", "print('never')")
    run = project.run("run", "--timeout", "60", "--allow-errors")
    result = run.result("exits.ipynb")
    assert run.code == 1 and result["status"] == "failed"
    assert result["error"]["ename"] == "SystemExit" and "code '3'" in result["error"]["evalue"]


def test_cells_that_did_not_run_show_nothing_from_the_committed_notebook(project: Project) -> None:
    path = project.write("stale.ipynb", "1/0", "print('fresh')")
    nb = nbformat.read(str(path), 4)
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="STALE\n")]
    nb.cells[1].execution_count = 7
    nb.cells[0].outputs = [nbformat.v4.new_output("stream", name="stdout", text="STALE\n")]
    nbformat.write(nb, str(path))
    run = project.run("run", "--timeout", "60")
    copy = run.executed("stale.ipynb")
    assert "STALE" not in json.dumps(copy)
    assert copy.cells[1].execution_count is None and copy.cells[1].metadata["nbci"] == {"not_run": True}
    assert copy.cells[0].execution_count == 1 and "nbci" not in copy.cells[0].metadata


def test_a_notebook_jupyter_opens_runs_with_a_warning(project: Project) -> None:
    doc = {"nbformat": 4, "nbformat_minor": 4, "metadata": {"kernelspec": {"name": "python3", "display_name": "P"}},
           "cells": [{"cell_type": "code", "id": "first", "metadata": {}, "execution_count": None, "outputs": [],
                      "source": "print('ok')"}]}
    (project.root / "old.ipynb").write_text(json.dumps(doc), encoding="utf-8")
    run = project.run("run", "--timeout", "60")
    result = run.result("old.ipynb")
    assert run.code == 0 and result["status"] == "passed"
    assert any("nbformat 4.5" in warning for warning in result["warnings"])
    assert "warning:" in run.stdout


def test_a_deeply_nested_file_does_not_stop_github_reporting(project: Project, tmp_path: Path) -> None:
    (project.root / "deep.ipynb").write_text("[" * 100_000, encoding="utf-8")
    project.write("ok.ipynb", "1")
    env = github_env(project, tmp_path)
    log = run_merged(project, "run", env=env)
    assert log.returncode == 1 and "Traceback" not in log.stdout
    assert "total<<" in (tmp_path / "gh_output").read_text() and (tmp_path / "gh_summary.md").stat().st_size > 0
    assert results(project)["deep.ipynb"]["status"] == "invalid"


# --- I/O errors ---------------------------------------------------------------------------------


def test_io_errors_are_one_line_and_lose_nothing(project: Project) -> None:
    project.write("a.ipynb", "1")
    project.write("sub/b.ipynb", "2")
    (project.root / "nbci-output").mkdir()
    (project.root / "nbci-output" / "sub").write_text("a file where a folder goes")
    (project.root / "blocker").write_text("a file")
    run = project.run("run", "--junit", "blocker/junit.xml", "--jobs", "1")
    assert run.code == 3, run.stderr
    assert "could not write the JUnit report" in run.stderr and "Traceback" not in run.stderr
    assert run.result("a.ipynb")["status"] == "passed"  # results.json written all the same
    assert run.result("sub/b.ipynb")["error"]["ename"] == "OutputWriteError"
    (project.root / "file-out").write_text("x")
    as_file = project.run("run", "--output-dir", "file-out")
    assert as_file.code == 2 and len(as_file.stderr.splitlines()) == 1 and "file-out" in as_file.stderr


def test_huge_shard_counts_are_usage_errors(project: Project) -> None:
    project.write("a.ipynb", "1")
    for args in (["list", "--shards", "100000000000"], ["run", "--shard", "1/99999999999999999999"]):
        run = project.run(*args)
        assert run.code == 2 and "256" in run.stderr and len(run.stderr.splitlines()) == 1, args


def test_a_broken_reporter_costs_no_other_report_and_exits_3(tmp_path: Path) -> None:
    from nbci.config import Config
    from nbci.pipeline import Outcome, prepare_output_dir, write_reports
    from nbci.results import NotebookResult, RunResult

    class Broken:
        name = "the broken report"

        def run_finished(self, run, config):
            raise RuntimeError("a bug")

    seen = []

    class Fine:
        def run_finished(self, run, config):
            seen.append(run)

    config = Config(root=tmp_path)
    prepare_output_dir(config, [])
    outcome = Outcome(RunResult([NotebookResult("a.ipynb", "passed")]))
    write_reports(config, outcome, [Broken(), Fine()])
    assert outcome.problems == ["internal error in the broken report: RuntimeError: a bug"]
    assert outcome.exit_code == 3 and seen == [outcome.run]
    summary = json.loads((config.output_dir / "results.json").read_text())["summary"]  # written again, not ok
    assert summary["ok"] is False and summary["problems"] == outcome.problems
    assert (config.output_dir / "junit.xml").is_file() and (config.output_dir / ".nbci-output").is_file()


@pytest.mark.parametrize("spool", [False, True])  # a pipe read on the loop; a spool file (Windows)
def test_kernel_output_keeps_its_first_bytes_either_way(tmp_path: Path, spool: bool) -> None:
    import asyncio

    from nbci.kernels import KernelOutput

    async def body() -> str:
        output = KernelOutput(tmp_path, limit=10, spool=spool)
        os.write(output.write_fd, b"0123456789 and more")  # as the kernel would, before we start reading
        writer = os.dup(output.write_fd)
        output.start()
        os.write(writer, b"!")
        os.close(writer)
        text = output.text()  # what waits in the pipe is read too
        output.stop()
        return text

    text = asyncio.run(body())
    assert text.startswith("0123456789\n[nbci: 10 more bytes of kernel output cut]")


@pytest.mark.skipif(not LINUX, reason="reads /proc")
def test_every_child_is_found_whatever_its_name(tmp_path: Path) -> None:
    import shutil

    from nbci.kernels import Child, children

    odd = tmp_path / "a) 1 2 (b"  # a process name a stat line's naive split would misread
    shutil.copy(shutil.which("sleep"), odd)
    odd.chmod(0o755)
    started = [subprocess.Popen([str(odd), "30"]), subprocess.Popen(["sleep", "30"], start_new_session=True)]
    try:
        found = set(children(os.getpid()))
        assert {Child(started[0].pid, os.getsid(0)), Child(started[1].pid, started[1].pid)} <= found
    finally:
        for child in started:
            child.kill()
            child.wait()


def test_nbci_processes_never_import_the_repositorys_modules(project: Project) -> None:
    """A repository's json.py or multiprocessing.py would run with the engine's rights: helpers and
    HTML render workers start from nbci's own folder, not the repository."""
    for module in ("json", "multiprocessing", "asyncio", "nbci"):
        (project.root / f"{module}.py").write_text(
            f"open({str(project.root / (module + '.imported'))!r}, 'w').close()\nraise SystemExit('{module} hijacked')\n")
    for i in range(3):
        project.write(f"nbs/n{i}.ipynb", f"print({i})")  # kernels start in nbs/, as Jupyter would
    nbci = Path(sys.executable).with_name("nbci")  # the console script: its own folder first on sys.path
    done = subprocess.run([str(nbci), "run", "--jobs", "2", "--helpers", "1", "--html"], cwd=project.root,
                          env=nbci_env(), capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(p.name for p in project.root.glob("*.imported")) == []
    assert (project.root / "nbci-output" / "nbs" / "n0.html").exists()
