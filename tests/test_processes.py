"""What a notebook starts dies with it, whatever it does to escape; nbci's own processes are closed to
its kernels. Every test runs nbci and real kernels (Linux: a subreaper and /proc are needed)."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import List

import nbformat
import pytest

from conftest import Project, nbci_env

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a subreaper needs Linux")


def alive(pid: int, seconds: str) -> bool:
    """Whether ``sleep SECONDS`` still runs as ``pid`` (a zombie is dead; a reused pid is another)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat, open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            state = stat.read().rsplit(b")", 1)[1].split()[0]
            return state != b"Z" and cmdline.read().split(b"\0")[1:2] == [seconds.encode()]
    except OSError:
        return False


# A daemon in a session of its own with an empty environment: nothing ties it to its kernel.
DETACHED = ("import subprocess\n"
            "subprocess.run(['setsid', 'sh', '-c',\n"
            "                'env -i sleep {seconds} </dev/null >/dev/null 2>&1 & echo $! > {name}'], check=True)")
# A daemon in its kernel's session, but in a process group of its own and with an empty environment.
REGROUPED = ("import subprocess, sys\n"
             "code = ('import os, subprocess; p = subprocess.Popen([\"/bin/sleep\", \"{seconds}\"], env={{}}, '\n"
             "        'preexec_fn=os.setpgrp, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, '\n"
             "        'stderr=subprocess.DEVNULL); open(\"{name}.tmp\", \"w\").write(str(p.pid)); '\n"
             "        'os.rename(\"{name}.tmp\", \"{name}\")')\n"
             "subprocess.run([sys.executable, '-c', code], check=True)")


def gone_soon(pid: int, seconds: str) -> bool:
    """Whether ``sleep SECONDS`` as ``pid`` is gone, waiting a bounded while for a kill in flight."""
    deadline = time.monotonic() + 30
    while alive(pid, seconds):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def daemon_pid(project: Project, name: str) -> int:
    return int((project.root / name).read_text())


@pytest.mark.parametrize("options", [["--kernel-start", "spawn"], ["--kernel-start", "fork"], ["--html"]])
def test_a_daemon_without_environment_or_session_dies_with_the_run(project: Project, options: List[str]) -> None:
    project.write("detach.ipynb", DETACHED.format(seconds=311, name="detached.pid"))
    run = project.run("run", "--jobs", "1", *options, env={"PYTHONHASHSEED": "0"})
    assert run.code == 0, run.stdout + run.stderr
    assert gone_soon(daemon_pid(project, "detached.pid"), "311")
    if "--html" in options:  # nbci's own render workers were spared: the page was rendered
        assert list(run.output_dir.rglob("detach*.html")), run.stderr


@pytest.mark.parametrize("start", ["spawn", "fork"])
def test_daemons_die_with_their_notebook_and_spare_the_others(project: Project, start: str) -> None:
    """Two notebooks at once in a helper process: the first one's daemon (its kernel's session) dies
    when it ends; the second's (a session of its own: whose it is cannot be told) lives on while the
    second still runs, and dies at the end of the run."""
    project.write("first.ipynb", REGROUPED.format(seconds=312, name="first.pid"))
    project.write("second.ipynb", DETACHED.format(seconds=313, name="second.pid"), inspect.getsource(alive),
                  "import time, pathlib\n"
                  "first, deadline = pathlib.Path('first.pid'), time.monotonic() + 120\n"
                  "while not first.exists() or alive(int(first.read_text()), '312'):\n"
                  "    assert time.monotonic() < deadline, 'the first notebook\\'s daemon outlived it'\n"
                  "    time.sleep(0.05)\n"
                  "assert alive(int(pathlib.Path('second.pid').read_text()), '313')")
    run = project.run("run", "--jobs", "2", "--kernel-start", start, env={"PYTHONHASHSEED": "0"})
    assert run.code == 0, run.stdout + run.stderr
    assert [nb["status"] for nb in run.results["notebooks"]] == ["passed", "passed"]
    assert gone_soon(daemon_pid(project, "first.pid"), "312")
    assert gone_soon(daemon_pid(project, "second.pid"), "313")


# Who owns the environ file of every process whose environment the kernel can read and holds the
# runner's command file (nbci's own, render workers', their resource tracker's), and of the kernel's
# parent (nbci, or a helper process).
SHOWING = ("import json, os\n"
           "marker, seen = %r, []\n"
           "for pid in filter(str.isdigit, os.listdir('/proc')):\n"
           "    try:\n"
           "        with open(f'/proc/{pid}/environ', 'rb') as environ:\n"
           "            if b'GITHUB_ENV=' + marker + b'\\0' in environ.read():\n"
           "                owner = os.stat(f'/proc/{pid}/environ')\n"
           "                seen.append([owner.st_uid, owner.st_gid])\n"
           "    except OSError:\n"
           "        pass\n"
           "parent = os.stat(f'/proc/{os.getppid()}/environ')\n"
           "print(json.dumps([seen, [parent.st_uid, parent.st_gid]]))")


@pytest.mark.parametrize("options", [["--jobs", "1"], ["--jobs", "2"], ["--jobs", "1", "--html"]])
def test_kernels_cannot_read_the_runners_files_from_nbcis_processes(project: Project, tmp_path: Path,
                                                                    options: List[str]) -> None:
    """Linux makes a non-dumpable process's /proc files root's and closes them to its user. Root may
    read them anyway, so as root nbci runs with another group: a dumpable process's files would be
    that group's."""
    marker = str(tmp_path / "github_env")
    project.write("peek.ipynb", SHOWING % marker.encode())
    project.write("other.ipynb", "1")  # two notebooks: with two jobs, a helper process runs them
    root = os.geteuid() == 0
    done = subprocess.run([sys.executable, "-m", "nbci", "run", *options], cwd=project.root,
                          env=nbci_env({"GITHUB_ENV": marker}), group=65534 if root else None,
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    executed = nbformat.read(str(project.root / "nbci-output" / "peek.ipynb"), 4)
    seen, parent = json.loads(executed.cells[0].outputs[0]["text"])
    if root:  # root reads every process's environment: nbci's own coordinator is seen, not dumpable
        assert seen
    assert all(owner == [0, 0] for owner in seen + [parent]), (seen, parent)
