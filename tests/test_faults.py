"""Faults a CI run must survive and classify: dead kernels, memory, limits, retries, cancellation.

Every test runs real kernels. None sleeps to win a race: a notebook that must be caught in the
act holds its state (sleeps, keeps its memory) until nbci acts, and the test waits for nbci's own
output before it acts itself.
"""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
import time
from typing import List

import nbformat
import psutil
import pytest

from conftest import Project, nbci_env

MARKER_ONCE = (
    "import pathlib\n"
    "first = not pathlib.Path('{marker}').exists()\n"
    "pathlib.Path('{marker}').touch()"
)


def test_kernel_killed_by_sigkill_is_crashed_naming_the_signal(project: Project) -> None:
    project.write("killed.ipynb", "import os, signal\nprint('before')",
                  "os.kill(os.getpid(), signal.SIGKILL)", "print('never')")
    run = project.run("run", "--timeout", "60")
    assert run.code == 1
    result = run.result("killed.ipynb")
    assert result["status"] == "crashed"
    assert result["error"]["cell_index"] == 1
    assert "SIGKILL" in result["error"]["evalue"]
    cells = run.executed("killed.ipynb").cells
    assert cells[0].outputs[0]["text"] == "before\n"
    assert cells[1].outputs[-1]["ename"] == "KernelDied" and cells[2].outputs == []
    assert "CRASHED" in run.stdout and "SIGKILL" in run.stdout


def test_memory_limit_kills_the_kernel_and_records_peak(project: Project) -> None:
    # grows by 50 MiB steps up to 1 GiB, then holds it: the monitor must act, not get lucky
    project.write("hog.ipynb", "import time\nchunks = []",
                  "for _ in range(20):\n    chunks.append(b'x' * (50 * 2**20))\n    time.sleep(0.05)\n"
                  "time.sleep(60)",
                  "print('never')")
    project.write("light.ipynb", "print('fine')")
    run = project.run("run", "--memory-limit", "300M", "--timeout", "60", "--jobs", "2", "--retries", "2")
    assert run.code == 1
    result = run.result("hog.ipynb")
    assert result["status"] == "crashed"
    assert result["error"]["ename"] == "MemoryLimitExceeded"
    assert result["attempts"] == 1  # a memory limit is not transient: no retry
    assert result["error"]["cell_index"] == 1
    assert "--memory-limit 300 MiB" in result["error"]["evalue"]
    assert result["peak_rss"] > 300 * 2**20
    assert result["duration"] < 30
    assert run.result("light.ipynb")["status"] == "passed"
    assert run.result("light.ipynb")["peak_rss"] < 300 * 2**20


def test_notebook_timeout_keeps_the_partial_copy(project: Project) -> None:
    project.write("slow.ipynb", "print('first')", "import time\ntime.sleep(60)", "print('never')")
    run = project.run("run", "--notebook-timeout", "2", "--timeout", "60")
    assert run.code == 1
    result = run.result("slow.ipynb")
    assert result["status"] == "notebook-timeout"
    assert result["error"]["cell_index"] == 1 and "--notebook-timeout 2 s" in result["error"]["evalue"]
    assert 2 <= result["duration"] < 20
    cells = run.executed("slow.ipynb").cells
    assert cells[0].outputs[0]["text"] == "first\n"
    assert cells[1].outputs[-1]["ename"] == "NotebookTimeout"
    assert run.executed("slow.ipynb").metadata["nbci"]["status"] == "notebook-timeout"
    assert "NOTEBOOK-TIMEOUT" in run.stdout


def test_notebook_timeout_holds_without_heartbeats(project: Project) -> None:
    project.write("slow.ipynb", "import time\ntime.sleep(60)")
    run = project.run("run", "--notebook-timeout", "1", "--heartbeat", "0", "--timeout", "60")
    assert run.result("slow.ipynb")["status"] == "notebook-timeout"
    assert "..." not in run.stdout


def test_fractional_cell_timeout_is_still_a_limit(project: Project) -> None:
    project.write("naps.ipynb", "import time\ntime.sleep(60)")
    run = project.run("run", "--timeout", "0.5")
    result = run.result("naps.ipynb")
    assert result["status"] == "timeout" and result["duration"] < 30


def test_missing_kernel_is_startup_failed_naming_installed_kernels(project: Project) -> None:
    project.write("exotic.ipynb", "print(1)", kernel="no-such-kernel")
    project.write("plain.ipynb", "print(1)")
    run = project.run("run")
    assert run.code == 1
    result = run.result("exotic.ipynb")
    assert result["status"] == "startup-failed" and result["kernel"] == "no-such-kernel"
    assert "'no-such-kernel'" in result["error"]["evalue"]
    assert "installed kernels: " in result["error"]["evalue"] and "python3" in result["error"]["evalue"]
    assert (run.output_dir / "exotic.ipynb").exists()
    assert run.result("plain.ipynb")["status"] == "passed"


def test_forty_notebooks_at_eight_jobs_all_start(project: Project) -> None:
    for i in range(40):
        project.write(f"many/n{i:02}.ipynb", f"print({i})")
    run = project.run("run", "--jobs", "8")
    assert run.code == 0, run.stdout
    results = run.results["notebooks"]
    assert len(results) == 40
    assert {nb["status"] for nb in results} == {"passed"}
    assert {nb["attempts"] for nb in results} == {1}
    for i in range(40):
        assert run.executed(f"many/n{i:02}.ipynb").cells[0].outputs[0]["text"] == f"{i}\n"


def test_heartbeat_names_notebook_cell_and_source(project: Project) -> None:
    project.write("nap.ipynb", "x = 1", "import time\ntime.sleep(3)  # a long nap\nx = 2")
    run = project.run("run", "--heartbeat", "0.5")
    assert run.code == 0
    beats = [line for line in run.stdout.splitlines() if "nap.ipynb: cell 2" in line]  # its second cell, counted from 1
    assert beats, run.stdout
    assert "`import time`" in beats[0] and "MiB" in beats[0]


def test_notebook_crashing_once_passes_on_retry_as_flaky(project: Project) -> None:
    project.write("once.ipynb", MARKER_ONCE.format(marker="crashed-once"),
                  "import os\nif first:\n    os._exit(3)", "print('second time lucky')")
    run = project.run("run", "--retries", "2")
    assert run.code == 0, run.stdout
    result = run.result("once.ipynb")
    assert result["status"] == "flaky" and result["attempts"] == 2
    assert result["error"] is None
    summary = run.results["summary"]
    assert summary["flaky"] == 1 and summary["passed"] == 1 and summary["ok"]
    assert run.executed("once.ipynb").cells[2].outputs[0]["text"] == "second time lucky\n"
    assert "FLAKY" in run.stdout and "1 flaky" in run.stdout


def test_retry_on_matches_the_error_name(project: Project) -> None:
    project.write("net.ipynb", MARKER_ONCE.format(marker="refused-once"),
                  "if first:\n    raise ConnectionError('connection refused')")
    run = project.run("run", "--retries", "1", "--retry-on", "Connection(Error|Reset)")
    assert run.code == 0, run.stdout
    assert run.result("net.ipynb")["status"] == "flaky"
    assert run.result("net.ipynb")["attempts"] == 2


def test_assertion_failure_is_not_retried(project: Project) -> None:
    # it would pass a second time: only a retry could hide the failure
    project.write("plain.ipynb", MARKER_ONCE.format(marker="asserted-once"), "assert not first, 'boom'")
    run = project.run("run", "--retries", "2", "--retry-on", "Connection")
    assert run.code == 1
    result = run.result("plain.ipynb")
    assert result["status"] == "failed" and result["attempts"] == 1
    assert result["error"]["ename"] == "AssertionError"


def test_retries_stop_after_the_last_attempt(project: Project) -> None:
    project.write("dies.ipynb", "import os\nos._exit(7)")
    run = project.run("run", "--retries", "2")
    result = run.result("dies.ipynb")
    assert result["status"] == "crashed" and result["attempts"] == 3
    assert "exited with code 7" in result["error"]["evalue"]


def test_huge_stream_output_keeps_engine_memory_bounded(project: Project) -> None:
    project.write("loud.ipynb", "import sys\nline = 'y' * 1023 + '\\n'\n"
                  "for _ in range(200 * 1024):\n    sys.stdout.write(line)", "print('after')")
    run = project.run("run", "--timeout", "120")
    assert run.code == 0, run.stdout
    assert run.results["summary"]["engine_peak_rss"] < 250 * 2**20
    cells = run.executed("loud.ipynb").cells
    text = "".join(out.get("text", "") for out in cells[0].outputs)
    assert "[nbci: stream output truncated" in text or "[nbci: the connection to the kernel's output dropped" in text
    assert len(text) < 5 * 2**20
    assert cells[1].outputs[0]["text"] == "after\n"
    assert (run.output_dir / "loud.ipynb").stat().st_size < 6 * 2**20


def test_huge_display_output_becomes_a_note(project: Project) -> None:
    project.write("big.ipynb", "from IPython.display import display\n"
                  "display({'text/plain': 'z' * (40 * 2**20)}, raw=True)\nprint('still here')")
    run = project.run("run")
    assert run.code == 0, run.stdout
    outputs = run.executed("big.ipynb").cells[0].outputs
    assert outputs[0]["text"].startswith("[nbci: a display_data output of 40 MiB was dropped")
    assert outputs[-1]["text"] == "still here\n"
    assert run.results["summary"]["engine_peak_rss"] < 250 * 2**20


def test_a_message_over_the_cap_is_refused_and_the_run_goes_on(project: Project) -> None:
    decoy = ("k = get_ipython().kernel\n"  # a forged note, and a message claiming another parent, before the flood
             "forged = k.session.msg('stream', {'name': 'stderr', 'text': 'ok'}, parent=k.get_parent())\n"
             "forged['header']['msg_id'] = forged['msg_id'] = 'nbci-iopub-reset'\n"
             "k.session.send(k.iopub_socket, forged)\n"
             "k.session.send(k.iopub_socket, 'stream', {'name': 'stdout', 'text': 'decoy'},\n"
             "               parent={'header': {'msg_id': 'made-up', 'msg_type': 'execute_request'}})\n")
    project.write("flood.ipynb", decoy + "import sys\nfor _ in range(3):\n"
                  "    sys.stdout.write('w' * (70 * 2**20))\n    sys.stdout.flush()", "print('after')")
    run = project.run("run")
    assert run.code == 0, run.stdout
    cells = run.executed("flood.ipynb").cells
    text = "".join(out.get("text", "") for out in cells[0].outputs)
    assert "[nbci: the connection to the kernel's output dropped (a message over 64 MiB is refused" in text
    assert "w" * 1000 not in text
    assert cells[1].outputs[0]["text"] == "after\n"
    [warning] = run.result("flood.ipynb")["warnings"]
    assert warning.startswith("cell 1: [nbci: the connection to the kernel's output dropped")
    assert run.results["summary"]["engine_peak_rss"] < 250 * 2**20


def test_engine_peak_memory_is_nbcis_own_not_its_parents(project: Project) -> None:
    """A process holding 300 MiB that execs nbci: the peak reported is nbci's (ru_maxrss would say 300+)."""
    project.write("small.ipynb", "print(1)")
    starter = ("import os, sys\nheld = bytearray(300 * 2**20)\nfor i in range(0, len(held), 4096):\n"
               "    held[i] = 1\nos.execv(sys.executable, [sys.executable, '-m', 'nbci', 'run'])")
    done = subprocess.run([sys.executable, "-c", starter], cwd=project.root, env=nbci_env(), capture_output=True,
                          text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads((project.root / "nbci-output" / "results.json").read_text(encoding="utf-8"))["summary"]
    assert 0 < summary["engine_peak_rss"] < 200 * 2**20


class LineReader:
    """Reads a process's stdout on a thread so the test can wait for a line with a deadline."""

    def __init__(self, stream) -> None:
        self.lines: "queue.Queue[str]" = queue.Queue()
        self.seen: List[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:
        for line in stream:
            self.lines.put(line)

    def wait_for(self, predicate, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self.seen):
            remaining = deadline - time.monotonic()
            assert remaining > 0, "gave up waiting; output so far:\n" + "".join(self.seen)
            try:
                self.seen.append(self.lines.get(timeout=remaining))
            except queue.Empty:
                pass

    def rest(self) -> str:
        self._thread.join(timeout=10)
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        return "".join(self.seen)


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_cancels_kills_everything_and_writes_results(project: Project, signum: int) -> None:
    sleeper = ("import os, subprocess, sys\n"
               "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'],"
               " start_new_session=True)\n"
               "open('{name}.pids', 'w').write(f'{{os.getpid()}} {{child.pid}}')")
    for name in "bcd":
        project.write(f"{name}_sleeps.ipynb", sleeper.format(name=name), "import time\ntime.sleep(120)")
    project.write("quick.ipynb", "print('done')")
    project.write("queued.ipynb", "print('never run')")
    # a previous run's durations fix the order: b, c, quick, then d once quick is done; queued waits
    expected = {"b_sleeps.ipynb": 100, "c_sleeps.ipynb": 90, "quick.ipynb": 50, "d_sleeps.ipynb": 10,
                "queued.ipynb": 1}
    (project.root / "previous.json").write_text(json.dumps(
        {"notebooks": [{"path": path, "duration": seconds} for path, seconds in expected.items()]}))
    proc = project.popen("run", "--jobs", "3", "--heartbeat", "0.5", "--timeout", "300",
                         "--durations", "previous.json")
    try:
        reader = LineReader(proc.stdout)
        # quick is done and the sleepers are in their sleeping cell, so their pid files exist
        reader.wait_for(lambda seen: any(line.startswith("PASSED") and "quick" in line for line in seen)
                        and all(any(f"{n}_sleeps.ipynb: cell 2" in line for line in seen) for n in "bcd"))
        family = psutil.Process(proc.pid).children(recursive=True)
        pids = [int(p) for n in "bcd" for p in (project.root / f"{n}.pids").read_text().split()]
        assert all(psutil.pid_exists(pid) for pid in pids)
        sent = time.monotonic()
        proc.send_signal(signum)
        code = proc.wait(timeout=30)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output, errors = reader.rest(), proc.stderr.read()
    assert code == 128 + signum, output + errors
    assert took < 5 and "Traceback" not in errors
    assert wait_gone(pids + [p.pid for p in family]) == []
    assert kernels_of([proc.pid] + [p.pid for p in family]) == []
    data = json.loads((project.root / "nbci-output" / "results.json").read_text(encoding="utf-8"))
    statuses = {nb["path"]: nb["status"] for nb in data["notebooks"]}
    assert statuses == {"quick.ipynb": "passed", "b_sleeps.ipynb": "cancelled", "c_sleeps.ipynb": "cancelled",
                        "d_sleeps.ipynb": "cancelled", "queued.ipynb": "cancelled"}  # listed, never dropped
    queued = [nb for nb in data["notebooks"] if nb["path"] == "queued.ipynb"][0]
    assert queued["error"]["evalue"] == "the run was cancelled before it started" and queued["output_path"] is None
    assert data["summary"]["cancelled"] is True and data["summary"]["ok"] is False
    partial = nbformat.read(str(project.root / "nbci-output" / "b_sleeps.ipynb"), as_version=4)
    assert partial.metadata["nbci"]["status"] == "cancelled"
    assert partial.cells[1].outputs[-1]["ename"] == "Cancelled"


def test_sigterm_while_kernels_start_leaves_no_process(project: Project) -> None:
    for i in range(6):
        project.write(f"n{i}.ipynb", "print(1)")
    proc = project.popen("run", "--jobs", "6")
    try:
        deadline = time.monotonic() + 60
        while not kernels_of(engine_and_helpers(proc.pid)):  # poll until a kernel process exists: cancel mid-start
            assert time.monotonic() < deadline and proc.poll() is None
        family = engine_and_helpers(proc.pid)
        assert len(family) == 3, "6 jobs are driven by 2 helper processes"
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert code == 143, proc.stderr.read()
    assert wait_gone(kernels_of(family) + family[1:]) == []
    assert (project.root / "nbci-output" / "results.json").exists()


def engine_and_helpers(engine_pid: int) -> List[int]:
    """The engine's pid and its helper processes' (the nbci processes that launch kernels)."""
    helpers = [p.pid for p in psutil.Process(engine_pid).children() if "nbci.helpers" in " ".join(p.cmdline())]
    return [engine_pid] + helpers


def kernels_of(launchers: List[int]) -> List[int]:
    """Every live kernel these processes launched: jupyter_client gives each ``JPY_PARENT_PID``."""
    parents = {str(pid) for pid in launchers}
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("JPY_PARENT_PID") in parents and not gone(proc.pid):
                found.append(proc.pid)
        except psutil.Error:
            pass
    return found


def wait_gone(pids: List[int], within: float = 5.0) -> List[int]:
    """The pids still alive after giving the OS ``within`` seconds to reap what was killed."""
    deadline = time.monotonic() + within
    while any(not gone(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [pid for pid in pids if not gone(pid)]
