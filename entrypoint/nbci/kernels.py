"""Starting kernels race-free, ahead of need, and killing them off the critical path.

Every notebook gets one fresh kernel that no other notebook ever touches. Kernels talk over IPC
sockets (a path per kernel) where the platform has them, so parallel starts cannot collide on TCP
ports. A ``KernelPool`` starts the kernels of the next notebooks in the queue while the current
ones run, with the very cwd and environment a normal start would give them.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from queue import Empty
from typing import Any, Dict, Hashable, List, Optional, Set

import psutil
from jupyter_client import AsyncKernelManager
from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

from nbci.iopub import BoundedIOPubChannel
from nbci.zygote import ForkProvisioner, Zygotes

HIST_FILE_ARG = "--HistoryManager.hist_file=:memory:"
IOPUB_PROBE = 0.1  # seconds to wait for IOPub after each kernel_info reply before asking again


class KernelStartError(Exception):
    """A kernel could not be started; the message names the kernel and what exists instead."""


@dataclass
class KernelRequest:
    """What a notebook's kernel must be: its kernelspec name and the folder it starts in."""

    name: str
    cwd: Path


@dataclass(eq=False)
class Kernel:
    """A started, ready kernel with its manager and client."""

    name: str
    manager: AsyncKernelManager
    client: object  # jupyter_client AsyncKernelClient

    @property
    def process(self) -> Optional[Any]:
        """The provisioner's Popen-like handle on the kernel process (None before start / after cleanup)."""
        return getattr(self.manager.provisioner, "process", None)

    @property
    def pid(self) -> Optional[int]:
        return self.process.pid if self.process is not None else None

    def returncode(self) -> Optional[int]:
        """The kernel process's exit status once it died (negative: killed by that signal)."""
        return self.process.poll() if self.process is not None else None

    def processes(self) -> List[psutil.Process]:
        """The kernel process and all its descendants; empty once it is gone."""
        if self.pid is None:
            return []
        try:
            root = psutil.Process(self.pid)
            return [root] + root.children(recursive=True)
        except psutil.Error:
            return []

    def tree_rss(self) -> Optional[int]:
        """Resident memory of the kernel and all its children, in bytes; None once it is gone."""
        procs = self.processes()
        if not procs:
            return None
        total = 0
        for proc in procs:
            try:
                total += proc.memory_info().rss
            except psutil.Error:
                pass
        return total

    def kill_tree(self) -> None:
        """SIGKILL the kernel's process group and every descendant it left elsewhere."""
        pid = self.pid
        if pid is None:
            return
        procs = self.processes()
        if hasattr(os, "killpg"):
            try:
                os.killpg(os.getpgid(pid), signal.SIGKILL)
            except (OSError, ProcessLookupError):
                pass
        for proc in procs:
            try:
                proc.kill()
            except psutil.Error:
                pass


def describe_exit(code: Optional[int]) -> str:
    """Say how a kernel process ended, naming the signal and the usual culprit for SIGKILL."""
    if code is None:
        return "the kernel stopped answering"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        if name == "SIGKILL":
            return "the kernel was killed by SIGKILL (often the out-of-memory killer)"
        return f"the kernel was killed by {name}"
    return f"the kernel exited with code {code}"


def available_kernels() -> List[str]:
    return sorted(KernelSpecManager().find_kernel_specs())


def is_ipykernel(name: str) -> bool:
    """Whether the kernelspec launches ipykernel (so IPython's sqlite history can be disabled)."""
    try:
        argv = KernelSpecManager().get_kernel_spec(name).argv
    except Exception:
        return False
    return any("ipykernel" in arg for arg in argv)


async def wait_until_ready(client: Any, timeout: float) -> None:
    """Return once the kernel answers ``kernel_info`` on shell and IOPub delivers; else RuntimeError.

    As jupyter_client's ``wait_for_ready``, minus the 0.2 s it then always waits for IOPub to fall
    quiet: the stale status messages it drains are ignored anyway (nbclient matches every IOPub
    message to its request), and 0.2 s on every kernel start is latency on the run's critical path.
    """
    deadline = time.monotonic() + timeout
    while True:
        client.kernel_info()  # every request also publishes status messages on IOPub
        try:
            reply = await client.shell_channel.get_msg(timeout=max(0.0, min(1.0, deadline - time.monotonic())))
        except Empty:
            reply = None
        if reply is not None and reply["msg_type"] == "kernel_info_reply":
            client._handle_kernel_info_reply(reply)  # protocol version adaptation, as wait_for_ready does
            try:
                await client.iopub_channel.get_msg(timeout=IOPUB_PROBE)
                return  # any IOPub message (a status, ipykernel 7's iopub_welcome): subscribed
            except Empty:
                pass  # not subscribed yet; the next kernel_info publishes again
        if not await client.is_alive():
            raise RuntimeError("the kernel died before replying to kernel_info")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the kernel did not answer kernel_info within {timeout:g} s")


class KernelLauncher:
    """Starts kernels on IPC transport with private connection files, and kills them."""

    def __init__(self, startup_timeout: float = 60.0, retries: int = 1, kernel_start: str = "spawn") -> None:
        self.startup_timeout = startup_timeout
        self.retries = retries
        self.runtime_dir = Path(tempfile.mkdtemp(prefix="nbci-"))
        self.zygotes = Zygotes(self.runtime_dir) if kernel_start == "fork" else None
        self._count = 0
        self._ipykernel: Dict[str, bool] = {}
        self.live: Set[Kernel] = set()

    def _manager(self, name: str) -> AsyncKernelManager:
        self._count += 1
        stem = self.runtime_dir / f"k{self._count}"
        manager = AsyncKernelManager(kernel_name=name, connection_file=str(stem) + ".json")
        if sys.platform != "win32":
            manager.transport = "ipc"
            manager.ip = str(stem)
        manager.autorestart = False
        return manager

    async def start(self, request: KernelRequest) -> Kernel:
        """Start and wait for a ready kernel, retrying a failed start; raise ``KernelStartError``."""
        last_error: Exception = RuntimeError("no attempt")
        for _ in range(self.retries + 1):
            try:
                return await self._start_once(request)
            except NoSuchKernel:
                raise KernelStartError(
                    f"no kernel named {request.name!r}; installed kernels: "
                    f"{', '.join(available_kernels()) or 'none'} (pass --kernel NAME or install it)"
                ) from None
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a start that failed for any reason is retried once
                last_error = exc
        raise KernelStartError(f"kernel {request.name!r} failed to start: {last_error}")

    async def _start_once(self, request: KernelRequest) -> Kernel:
        manager = self._manager(request.name)
        if request.name not in self._ipykernel:
            self._ipykernel[request.name] = is_ipykernel(request.name)
        extra = [HIST_FILE_ARG] if self._ipykernel[request.name] else []
        if self.zygotes is not None:
            manager.kernel_id = manager.kernel_id or str(uuid.uuid4())
            manager.provisioner = ForkProvisioner(kernel_id=manager.kernel_id, kernel_spec=manager.kernel_spec,
                                                  parent=manager)
            manager.provisioner.zygotes = self.zygotes
        await manager.start_kernel(cwd=str(request.cwd), extra_arguments=extra)
        client = manager.client()
        client.iopub_channel_class = BoundedIOPubChannel  # huge outputs are cut before decoding
        kernel = Kernel(request.name, manager, client)
        self.live.add(kernel)
        try:
            kernel.client.start_channels()
            await wait_until_ready(kernel.client, self.startup_timeout)
        except BaseException:
            await self.shutdown(kernel)
            raise
        return kernel

    async def shutdown(self, kernel: Kernel) -> None:
        """Kill a kernel now (it is never reused) and release its sockets and files."""
        self.live.discard(kernel)
        kernel.kill_tree()
        try:
            kernel.client.stop_channels()
        except Exception:
            pass
        try:
            await kernel.manager.shutdown_kernel(now=True)
        except Exception:
            pass
        try:
            await kernel.manager.cleanup_resources()
        except Exception:
            pass

    def kill_all(self) -> None:
        """Synchronously kill every kernel still alive: the last resort on cancellation."""
        for kernel in list(self.live):
            kernel.kill_tree()

    def close(self) -> None:
        self.kill_all()
        if self.zygotes is not None:
            self.zygotes.close()
        shutil.rmtree(self.runtime_dir, ignore_errors=True)


class KernelPool:
    """Starts the kernels of upcoming notebooks ahead of need; each kernel serves one notebook."""

    def __init__(self, launcher: KernelLauncher) -> None:
        self.launcher = launcher
        self._starting: Dict[Hashable, "asyncio.Task[Kernel]"] = {}
        self._shutdowns: Set["asyncio.Task[None]"] = set()

    def prefetch(self, key: Hashable, request: KernelRequest) -> None:
        """Begin starting the kernel for queue entry ``key`` unless already begun."""
        if key not in self._starting:
            self._starting[key] = asyncio.ensure_future(self.launcher.start(request))

    async def acquire(self, key: Hashable, request: KernelRequest) -> Kernel:
        """The ready kernel for ``key`` (started now if it was not prefetched)."""
        self.prefetch(key, request)
        return await self._starting.pop(key)

    def release(self, kernel: Kernel) -> None:
        """Kill a used kernel in the background, off the critical path."""
        task = asyncio.ensure_future(self.launcher.shutdown(kernel))
        self._shutdowns.add(task)
        task.add_done_callback(self._shutdowns.discard)

    async def drain(self) -> None:
        """Cancel unused starts and wait for every shutdown to finish."""
        for task in self._starting.values():
            task.cancel()
        for task in self._starting.values():
            try:
                kernel = await task
            except BaseException:
                continue
            await self.launcher.shutdown(kernel)
        self._starting.clear()
        if self._shutdowns:
            await asyncio.gather(*list(self._shutdowns), return_exceptions=True)
