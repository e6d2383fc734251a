"""Kernel start: a kernel is handed out only once it answers and its output reaches us.

Real kernels (and real processes posing as broken kernels) throughout; no fixed sleeps.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Callable, List

import psutil
import pytest

from nbci.kernels import Kernel, KernelLauncher, KernelRequest, KernelStartError


@pytest.fixture
def kernelspec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str, List[str]], str]:
    """Install a kernelspec ``name`` running ``argv`` where jupyter_client finds it; return the name."""
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))

    def install(name: str, argv: List[str]) -> str:
        spec = tmp_path / "jupyter" / "kernels" / name
        spec.mkdir(parents=True)
        (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": name, "language": "python"}))
        return name

    return install


async def printed(kernel: Kernel, code: str) -> str:
    out: List[str] = []

    def hook(msg: dict) -> None:
        if msg["msg_type"] == "stream":
            out.append(msg["content"]["text"])

    await kernel.client.execute_interactive(code, output_hook=hook, timeout=30)
    return "".join(out)


def test_output_of_the_first_cell_is_never_lost(tmp_path: Path) -> None:
    """Ready means IOPub is subscribed: output printed right away arrives, on every kernel."""
    async def main() -> List[str]:
        launcher = KernelLauncher()
        try:
            seen = []
            for i in range(6):  # one at a time: a lone kernel answers fastest, before IOPub may be subscribed
                kernel = await launcher.start(KernelRequest("python3", tmp_path))
                seen.append(await printed(kernel, f"print('first', {i})"))
                await launcher.shutdown(kernel)
            return seen
        finally:
            launcher.close()

    assert asyncio.run(main()) == [f"first {i}\n" for i in range(6)]


def start(kernel_name: str, cwd: Path, startup_timeout: float) -> str:
    """Start ``kernel_name`` once, expecting it to fail; return the error message."""
    async def main() -> str:
        launcher = KernelLauncher(startup_timeout=startup_timeout, retries=0)
        try:
            with pytest.raises(KernelStartError) as error:
                await launcher.start(KernelRequest(kernel_name, cwd))
            assert launcher.live == set()
            return str(error.value)
        finally:
            launcher.close()

    return asyncio.run(main())


def test_kernel_dying_during_start_is_named_not_waited_for(tmp_path: Path, kernelspec) -> None:
    name = kernelspec("dies", [sys.executable, "-c", "raise SystemExit(3)", "{connection_file}"])
    message = start(name, tmp_path, startup_timeout=120)
    assert "'dies' failed to start" in message and "died before replying" in message


def test_silent_kernel_times_out_and_is_killed(tmp_path: Path, kernelspec) -> None:
    pid_file = tmp_path / "silent.pid"
    code = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(600)"
    name = kernelspec("silent", [sys.executable, "-c", code, "{connection_file}"])
    message = start(name, tmp_path, startup_timeout=1)
    assert "did not answer kernel_info within 1 s" in message
    pid = int(pid_file.read_text())
    try:
        assert psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        pass
