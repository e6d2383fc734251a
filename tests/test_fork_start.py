"""``--kernel-start fork``: forked kernels behave like normally started ones, and never outlive the run.

Real kernels throughout. Each test targets one way forking differs from a normal start when done
naively; waits are bounded polls, never fixed sleeps.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import os
import signal
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import psutil
import pytest

from nbci.kernels import TAG_VARIABLE, Kernel, KernelLauncher, KernelRequest
from nbci.zygote import unavailable_reason

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="forking kernels needs Linux")

FACTS = r'''
__modules = sorted(__import__("sys").modules)
import json, os, random, signal, subprocess, sys
def __handler(h):
    return h.name if isinstance(h, signal.Handlers) else getattr(h, "__qualname__", repr(h))
print(json.dumps({
    "modules": __modules,
    "pid": os.getpid(), "ppid": os.getppid(), "pgid": os.getpgid(0), "sid": os.getsid(0),
    "cwd": os.getcwd(), "argv": sys.argv, "orig_argv": getattr(sys, "orig_argv", None), "path": sys.path,
    "executable": sys.executable, "flags": repr(sys.flags), "xoptions": sys._xoptions,
    "warnings": [repr(f) for f in __import__("warnings").filters], "env": dict(os.environ),
    "hash": hash("abc"), "random": random.random(),
    "mask": sorted(int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, [])),
    "handlers": {int(s): __handler(signal.getsignal(s)) for s in signal.valid_signals()
                 if signal.getsignal(s) is not None},
    "subprocess": subprocess.run(["sh", "-c", "exit 3"]).returncode,
    "fds": {int(fd): os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")
            if os.path.exists(f"/proc/self/fd/{fd}") or os.path.islink(f"/proc/self/fd/{fd}")},
}))
'''


async def run_code(kernel: Kernel, code: str, timeout: float = 60) -> str:
    """Execute ``code``; return its stdout, failing the test on an error."""
    out: List[str] = []
    errors: List[dict] = []

    def hook(msg: dict) -> None:
        if msg["msg_type"] == "stream":
            out.append(msg["content"]["text"])
        elif msg["msg_type"] == "error":
            errors.append(msg["content"])

    await kernel.client.execute_interactive(code, output_hook=hook, timeout=timeout)
    assert not errors, errors
    return "".join(out)


async def facts(kernel: Kernel) -> Dict[str, Any]:
    return json.loads(await run_code(kernel, FACTS))


def in_launcher(kernel_start: str, body: Callable[[KernelLauncher], Any]) -> Any:
    """Run ``await body(launcher)`` with a fresh launcher, closed afterwards."""
    async def main() -> Any:
        launcher = KernelLauncher(kernel_start=kernel_start)
        try:
            return await body(launcher)
        finally:
            for kernel in list(launcher.live):
                await launcher.shutdown(kernel)
            launcher.close()
    return asyncio.run(main())


def forked(kernel: Kernel) -> bool:
    return bool(getattr(kernel.manager.provisioner, "forked", False))


def without_connection_file(argv: List[str]) -> List[str]:
    return ["CONN" if arg.endswith(".json") else arg for arg in argv]


@pytest.fixture
def seeded(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fixed string-hash seed: the condition under which kernels are forked at all."""
    monkeypatch.setenv("PYTHONHASHSEED", "0")


@pytest.fixture
def flagged_kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A kernelspec with interpreter flags, as ``python -m ipykernel install`` writes on Python 3.11+."""
    spec = tmp_path / "jupyter" / "kernels" / "flagged"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-Xfrozen_modules=off", "-X", "utf8", "-W", "error::ResourceWarning", "-B",
            "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "flagged", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    return "flagged"


@pytest.mark.parametrize("kernel_name", ["python3", "flagged"])
def test_forked_kernel_is_like_a_normal_start(seeded: None, tmp_path: Path, request: pytest.FixtureRequest,
                                              kernel_name: str) -> None:
    if kernel_name == "flagged":
        request.getfixturevalue("flagged_kernel")

    async def body(launcher: KernelLauncher) -> tuple:
        normal = await KernelLauncher.start(spawner, KernelRequest(kernel_name, tmp_path))
        fork = await launcher.start(KernelRequest(kernel_name, tmp_path))
        assert forked(fork) and not forked(normal)
        result = await facts(normal), await facts(fork)
        await spawner.shutdown(normal)
        return result

    spawner = KernelLauncher(kernel_start="spawn")
    try:
        normal, fork = in_launcher("fork", body)
    finally:
        spawner.close()
    me = os.getpid()
    tags = [info["env"].pop(TAG_VARIABLE) for info in (normal, fork)]  # each kernel has its own
    assert len(set(tags)) == 2 and all(tags)
    for key in ("cwd", "path", "executable", "flags", "xoptions", "warnings", "env", "hash", "mask", "handlers",
                "subprocess"):
        assert fork[key] == normal[key], key
    if kernel_name == "flagged":  # the flags hold in the forked kernel, as in the normal one
        assert fork["xoptions"] == {"frozen_modules": "off", "utf8": True}
        assert "dont_write_bytecode=1" in fork["flags"]
        assert any("ResourceWarning" in f and "'error'" in f for f in fork["warnings"])
    assert without_connection_file(fork["argv"]) == without_connection_file(normal["argv"])
    if normal["orig_argv"] is not None:  # sys.orig_argv is Python 3.10+
        assert without_connection_file(fork["orig_argv"]) == without_connection_file(normal["orig_argv"])
    assert fork["env"]["JPY_PARENT_PID"] == str(me)
    assert fork["subprocess"] == 3  # SIGCHLD is not ignored or reaped by an inherited handler
    assert fork["mask"] == []
    for info in (normal, fork):  # parent is the driver; the kernel leads its own session
        assert info["ppid"] == me
        assert info["pid"] == info["pgid"] == info["sid"]
    # Strict: the template must not have imported anything a normal start does not import.
    assert sorted(set(fork["modules"]) - set(normal["modules"])) == []


def test_without_hash_seed_each_kernel_gets_its_own(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                    capfd: pytest.CaptureFixture) -> None:
    monkeypatch.delenv("PYTHONHASHSEED", raising=False)

    async def body(launcher: KernelLauncher) -> List[int]:
        kernels = [await launcher.start(KernelRequest("python3", tmp_path)) for _ in range(2)]
        return [int(await run_code(k, "print(hash('abc'))")) for k in kernels]

    first, second = in_launcher("fork", body)
    assert first != second
    assert "PYTHONHASHSEED" in capfd.readouterr().err  # the fallback is explained


def test_per_kernel_variables_are_the_kernels_own(seeded: None, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Variables that may differ between kernels of one template are re-applied after the fork."""
    async def body(launcher: KernelLauncher) -> List[str]:
        seen = []
        for name in ("first.ipynb", "second.ipynb"):
            monkeypatch.setenv("JPY_SESSION_NAME", name)
            kernel = await launcher.start(KernelRequest("python3", tmp_path))
            assert forked(kernel)
            seen.append(await run_code(kernel, "import os; print(os.environ['JPY_SESSION_NAME'], __session__)"))
        assert len(launcher.zygotes._templates) == 1
        return seen

    assert in_launcher("fork", body) == ["first.ipynb first.ipynb\n", "second.ipynb second.ipynb\n"]


def test_each_forked_kernel_reseeds_random(seeded: None, tmp_path: Path) -> None:
    async def body(launcher: KernelLauncher) -> List[str]:
        kernels = [await launcher.start(KernelRequest("python3", tmp_path)) for _ in range(2)]
        assert all(forked(k) for k in kernels)
        return [await run_code(k, "import random, uuid; print(random.random(), uuid.uuid4())") for k in kernels]

    first, second = in_launcher("fork", body)
    assert first != second


def test_no_state_shared_between_forked_kernels(seeded: None, tmp_path: Path) -> None:
    async def body(launcher: KernelLauncher) -> str:
        first = await launcher.start(KernelRequest("python3", tmp_path))
        await run_code(first, "import json, ipykernel; secret = 42; json.secret = 1; ipykernel.secret = 2")
        second = await launcher.start(KernelRequest("python3", tmp_path))
        assert forked(first) and forked(second)
        return await run_code(second, "import json, ipykernel\n"
                                      "print('secret' in dir(), hasattr(json, 'secret'), hasattr(ipykernel, 'secret'))")

    assert in_launcher("fork", body).split() == ["False", "False", "False"]


def test_forked_kernel_holds_none_of_the_templates_descriptors(seeded: None, tmp_path: Path) -> None:
    async def body(launcher: KernelLauncher) -> tuple:
        kernel = await launcher.start(KernelRequest("python3", tmp_path))
        assert forked(kernel)
        template = psutil.Process(next(iter(launcher.zygotes._templates.values())).result().process.pid)
        fds = {int(fd): os.readlink(f"/proc/{template.pid}/fd/{fd}") for fd in os.listdir(f"/proc/{template.pid}/fd")}
        return fds, await facts(kernel)

    template_fds, info = in_launcher("fork", body)
    shared = {template_fds.get(fd) for fd in (0, 1, 2)}  # /dev/null and nbci's stdout and stderr
    private = {target for fd, target in template_fds.items() if target not in shared}
    assert any(target.startswith("socket:") for target in private)  # the template's socket to nbci
    assert private & set(info["fds"].values()) == set()
    assert info["fds"]["0"].startswith("pipe:")  # stdin is a pipe the driver holds, as with Popen(stdin=PIPE)


def test_forked_kernel_can_be_interrupted(seeded: None, tmp_path: Path) -> None:
    async def body(launcher: KernelLauncher) -> dict:
        kernel = await launcher.start(KernelRequest("python3", tmp_path))
        assert forked(kernel)
        msg_id = kernel.client.execute("print('started', flush=True); import time; time.sleep(120)")
        while True:  # wait until the cell really runs, then interrupt it
            msg = await kernel.client.get_iopub_msg(timeout=60)
            if msg["msg_type"] == "stream" and "started" in msg["content"]["text"]:
                break
        await kernel.manager.interrupt_kernel()
        while True:
            reply = await kernel.client.get_shell_msg(timeout=60)
            if reply["parent_header"].get("msg_id") == msg_id:
                return reply["content"]

    reply = in_launcher("fork", body)
    assert reply["status"] == "error" and reply["ename"] == "KeyboardInterrupt"


def test_forked_kernel_exit_status_is_reported(seeded: None, tmp_path: Path) -> None:
    async def body(launcher: KernelLauncher) -> Optional[int]:
        kernel = await launcher.start(KernelRequest("python3", tmp_path))
        assert forked(kernel)
        kernel.client.execute("import os, signal; os.kill(os.getpid(), signal.SIGKILL)")
        deadline = time.monotonic() + 30
        while kernel.returncode() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return kernel.returncode()

    assert in_launcher("fork", body) == -signal.SIGKILL


@pytest.mark.parametrize("cmd, env, reason", [
    (["/usr/bin/python3", "-m", "ipykernel_launcher", "-f", "c.json"], {"PYTHONHASHSEED": "0"}, None),
    (["/usr/bin/python3", "-m", "ipykernel_launcher", "-f", "c.json"], {}, "PYTHONHASHSEED"),
    (["/usr/bin/python3", "-m", "ipykernel_launcher", "-f", "c.json"], {"PYTHONHASHSEED": "random"}, "PYTHONHASHSEED"),
    (["/usr/bin/python3", "-Xfrozen_modules=off", "-m", "ipykernel_launcher", "-f", "c.json"],
     {"PYTHONHASHSEED": "0"}, None),
    (["/usr/bin/python3", "-X", "dev", "-W", "ignore", "-OO", "-u", "-m", "ipykernel", "-f", "c.json"],
     {"PYTHONHASHSEED": "0"}, None),
    (["/usr/bin/python3", "-E", "-m", "ipykernel_launcher", "-f", "c.json"], {"PYTHONHASHSEED": "0"}, "flags among"),
    (["/usr/bin/python3", "-I", "-m", "ipykernel_launcher", "-f", "c.json"], {"PYTHONHASHSEED": "0"}, "flags among"),
    (["/usr/bin/python3", "-P", "-m", "ipykernel_launcher", "-f", "c.json"], {"PYTHONHASHSEED": "0"}, "flags among"),
    (["/usr/bin/python3", "-uE", "-m", "ipykernel_launcher", "-f", "c.json"], {"PYTHONHASHSEED": "0"}, "flags among"),
    (["/usr/bin/python3", "-m", "other_kernel", "-f", "c.json"], {"PYTHONHASHSEED": "0"}, "flags among"),
    (["/usr/bin/python3", "-X"], {"PYTHONHASHSEED": "0"}, "flags among"),
    (["/usr/bin/R", "--slave", "-e", "IRkernel::main()"], {"PYTHONHASHSEED": "0"}, "flags among"),
])
def test_fork_only_when_semantics_are_kept(cmd: List[str], env: Dict[str, str], reason: Optional[str],
                                           tmp_path: Path) -> None:
    found = unavailable_reason(cmd, env, str(tmp_path), {})
    assert (found is None) if reason is None else (reason in (found or ""))


# --- whole runs: nothing outlives nbci -----------------------------------------------------------

SLEEPER = "import os, pathlib, time\npathlib.Path(f'{os.getpid()}.pid').write_text('')\ntime.sleep(600)"


def marked(marker: str) -> List[psutil.Process]:
    """Live processes whose environment carries ``marker``: nbci, its template and every kernel of a run."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("NBCI_TEST_MARKER") == marker and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.Error:
            pass
    return found


def wait_until(condition: Callable[[], Any], within: float, what: str) -> Any:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"not within {within} s: {what}")


def pid_files(folder: Path, count: int) -> List[int]:
    return [int(p.stem) for p in folder.glob("*.pid")] if len(list(folder.glob("*.pid"))) >= count else []


def fork_env() -> Dict[str, str]:
    return {"PYTHONHASHSEED": "0", "NBCI_TEST_MARKER": uuid.uuid4().hex}


def test_fork_run_passes_and_leaves_nothing_behind(project) -> None:
    for i in range(3):
        project.write(f"nb{i}.ipynb", "import os\nprint(os.getcwd())", "x = 1 + 1\nassert x == 2")
    env = fork_env()
    run = project.run("run", "--jobs", "2", "--kernel-start", "fork", env=env)
    assert run.code == 0, run.stderr
    assert "starting kernels normally" not in run.stderr
    assert marked(env["NBCI_TEST_MARKER"]) == []


def start_sleepers(project, helpers: str = "1") -> tuple:
    """``nbci run --kernel-start fork`` on two notebooks that sleep: (process, marker, kernel pids)."""
    project.write("a.ipynb", SLEEPER)
    project.write("b.ipynb", SLEEPER)
    env = fork_env()
    proc = project.popen("run", "--jobs", "2", "--kernel-start", "fork", "--helpers", helpers, env=env)
    try:
        kernels = wait_until(lambda: pid_files(project.root, 2), 120, "both kernels running")
    except BaseException:
        proc.kill()
        raise
    return proc, env["NBCI_TEST_MARKER"], kernels


def test_cancelled_fork_run_leaves_nothing_behind(project) -> None:
    proc, marker, _ = start_sleepers(project)
    try:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM
    assert wait_until(lambda: not marked(marker), 30, "no template or kernel left") is True


@pytest.mark.skipif(
    int(importlib.metadata.version("ipykernel").split(".")[0]) < 7,
    reason="ipykernel < 7 notices a dead parent only when re-parented to PID 1, not to a subreaper",
)
@pytest.mark.parametrize("helpers", ["0", "1"])
def test_forked_kernels_exit_when_nbci_is_killed(project, helpers: str) -> None:
    proc, marker, kernels = start_sleepers(project, helpers)
    try:
        driver = proc.pid if helpers == "0" else psutil.Process(kernels[0]).ppid()
        assert all(psutil.Process(pid).ppid() == driver for pid in kernels)  # forked, yet children of their driver
        assert psutil.Process(driver).ppid() == proc.pid or driver == proc.pid
        others = [p for p in marked(marker) if p.pid != proc.pid]
        assert len(others) == 3 + int(helpers)  # the template, two kernels, and the helper that drives them
        proc.kill()
        proc.communicate(timeout=60)
    finally:
        proc.kill()
    # ipykernel's own parent watch ends the kernels (a helper gets SIGTERM when nbci dies and kills
    # them first); the template sees its socket close.
    assert wait_until(lambda: not marked(marker), 30, "kernels and template exit") is True
