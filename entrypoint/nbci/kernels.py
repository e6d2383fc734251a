"""Starting kernels race-free, ahead of need, and killing them off the critical path.

Every notebook gets one fresh kernel that no other notebook ever touches. Kernels talk over IPC
sockets (a path per kernel) where the platform has them, so parallel starts cannot collide on TCP
ports. A ``KernelPool`` starts the kernels of the next notebooks in the queue while the current
ones run, with the very cwd and environment a normal start would give them.

What a kernel can reach is bounded: its environment lacks the runner's files and tokens
(``HIDDEN_VARIABLES``), it gets no stdin (``input()`` fails at once), and what its process writes
to stdout/stderr is read by nbci (``KernelOutput``), never passed to the job log directly. On
Linux nbci is a child subreaper for the whole run, and every kernel leads a session of its own (no
process can join another's session): a child of nbci outside nbci's session is a kernel or was left
by one (``strays``). When a notebook ends, its kernel's descendants die with it, also those that
left its process tree (``setsid``, double fork) and were re-parented to nbci, when they are in its
session or carry its tag (``TAG_VARIABLE``, in each kernel's environment); when the run ends,
every other one (an empty environment, a session of its own). nbci's own processes are not
dumpable (``harden_process``), so a kernel cannot read their memory or environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from queue import Empty
from typing import Any, Dict, Hashable, Iterable, Iterator, List, Mapping, Optional, Set

import psutil
import zmq.asyncio
from jupyter_client import AsyncKernelManager
from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

from nbci.iopub import connect_bounded
from nbci.results import KERNEL_OUTPUT_CHARS
from nbci.zygote import ForkProvisioner, Zygotes

HIST_FILE_ARG = "--HistoryManager.hist_file=:memory:"
# The runner's files a step writes to change later steps (GITHUB_ENV: variables such as BASH_ENV;
# GITHUB_OUTPUT: the action's outputs); the ACTIONS_* variables carry the runner's tokens.
HIDDEN_VARIABLES = ("GITHUB_ENV", "GITHUB_PATH", "GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY", "GITHUB_STATE")
HIDDEN_PREFIXES = ("ACTIONS_",)
TAG_VARIABLE = "NBCI_KERNEL_TAG"  # "<run>-<n>": which kernel a process descends from
PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36
STRAY_ROUNDS = 10  # kill-and-rescan rounds at the run's end: a killed process's children come here next
READ_CHUNK = 65536
IOPUB_PROBE = 0.1  # seconds to wait for IOPub after each kernel_info reply before asking again


def is_runner_file(variable: str) -> bool:
    """Whether ``variable`` names one of the runner's command files or tokens (only for the coordinator)."""
    return variable in HIDDEN_VARIABLES or variable.startswith(HIDDEN_PREFIXES)


def without_runner_files(environ: Mapping[str, str]) -> Dict[str, str]:
    """``environ`` less the runner's command files and tokens."""
    return {key: value for key, value in environ.items() if not is_runner_file(key)}


@contextlib.contextmanager
def runner_files_hidden() -> Iterator[None]:
    """``os.environ`` less the runner's command files and tokens while the block starts processes (which
    inherit it, and which kernels could read); as it was afterwards. Only while no other thread runs."""
    hidden = {key: value for key, value in os.environ.items() if is_runner_file(key)}
    for key in hidden:
        del os.environ[key]
    try:
        yield
    finally:
        os.environ.update(hidden)


def kernel_environment(environ: Mapping[str, str], tag: str) -> Dict[str, str]:
    """The environment a kernel starts with: ``environ`` less the runner's files and tokens, plus its tag."""
    return {**without_runner_files(environ), TAG_VARIABLE: tag}


def prctl(option: int, value: int) -> bool:
    """Linux's ``prctl(option, value)`` for this process; False where it failed or does not exist."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def become_subreaper() -> bool:
    """Make orphaned descendants re-parent to this process (Linux); False where that is impossible."""
    return prctl(PR_SET_CHILD_SUBREAPER, 1)


def harden_process() -> bool:
    """Make this process non-dumpable (Linux): processes of the same user, kernels among them, can no
    longer read its memory or ``/proc/PID/environ``; False where that failed. Undone by ``exec``."""
    return prctl(PR_SET_DUMPABLE, 0)


def child_pids(pid: int) -> List[int]:
    """The direct children of ``pid``: from /proc without scanning every process where Linux says."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as handle:
            return [int(part) for part in handle.read().split()]
    except (OSError, ValueError):
        try:
            return [child.pid for child in psutil.Process(pid).children()]
        except psutil.Error:
            return []


def descendants(pid: int) -> List[int]:
    """``pid``'s descendants, parents before children."""
    found: List[int] = []
    queue = child_pids(pid)
    while queue:
        child = queue.pop(0)
        if child not in found:
            found.append(child)
            queue.extend(child_pids(child))
    return found


@dataclass(frozen=True)
class Child:
    """A direct child process and the session it belongs to (-1: unknown)."""

    pid: int
    session: int


def children(pid: int) -> List[Child]:
    """Every direct child of ``pid``, from each process's /proc stat: unlike the ``children`` file, which
    Linux documents as unreliable while children come and go (kernels do, all the time here), this
    misses none. Falls back to ``child_pids``, sessions unknown, where there is no /proc."""
    try:
        entries = [entry.name for entry in os.scandir("/proc") if entry.name.isdigit()]
    except OSError:
        return [Child(child, -1) for child in child_pids(pid)]
    found = []
    for name in entries:
        try:
            with open(f"/proc/{name}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2:].split()  # after "pid (comm) ": state, ppid, pgrp, session, ...
        if len(fields) > 3 and fields[1] == str(pid).encode():
            found.append(Child(int(name), int(fields[3])))
    return found


def strays() -> List[Child]:
    """This process's children outside its session: kernels, kernel templates, and whatever a kernel
    started that was re-parented here, whatever its environment. nbci's own processes (helpers,
    render workers, resource trackers) share its session; a kernel's descendants never can. Only a
    subreaper (Linux) has children it did not start: elsewhere, none."""
    if not sys.platform.startswith("linux"):
        return []
    session = os.getsid(0)
    return [child for child in children(os.getpid()) if child.session != session]


def carries_tag(pid: int, tag: str) -> bool:
    """Whether process ``pid`` started with ``TAG_VARIABLE`` equal to ``tag`` or ``tag-...``."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as handle:
            variables = handle.read().split(b"\0")
    except OSError:
        return False
    prefix = f"{TAG_VARIABLE}={tag}".encode()
    return any(v == prefix or v.startswith(prefix + b"-") for v in variables)


def kill_orphans(kernel_pid: int, tag: str) -> None:
    """Kill (and reap) the re-parented processes that came from kernel ``kernel_pid``, with their
    descendants: those in its session (it leads one) or carrying its tag."""
    kill_with_descendants([child.pid for child in strays() if child.pid != kernel_pid
                           and (child.session == kernel_pid or (tag and carries_tag(child.pid, tag)))])


def kill_strays() -> None:
    """Kill (and reap) every child outside this process's session, with its descendants, until none is left."""
    for _ in range(STRAY_ROUNDS):
        found = [child.pid for child in strays()]
        if not found:
            return
        kill_with_descendants(found)


def kill_with_descendants(pids: List[int]) -> None:
    """SIGKILL ``pids``, our children, and all their descendants; reap ``pids``."""
    kill_pids(pid for parent in pids for pid in [parent] + descendants(parent))
    reap(pids)


def kill_pids(pids: Iterable[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


class KernelOutput:
    """What a kernel process writes to its stdout and stderr, first ``limit`` bytes kept, the rest
    counted: read from a pipe on the event loop, or (Windows, whose loop cannot watch a pipe) from a
    spool file in ``folder``."""

    def __init__(self, folder: Path, limit: int = KERNEL_OUTPUT_CHARS, spool: bool = os.name == "nt") -> None:
        self.limit = limit
        self._chunks: List[bytes] = []
        self._kept = 0
        self.dropped = 0
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._spool: Optional[str] = None
        if spool:
            self.write_fd, self._spool = tempfile.mkstemp(prefix="kernel-output-", dir=folder)
            self.read_fd = -1
        else:
            self.read_fd, self.write_fd = os.pipe()
            os.set_blocking(self.read_fd, False)

    def start(self) -> None:
        """Close our copy of the write end (the kernel has it) and read on the running loop."""
        os.close(self.write_fd)
        self.write_fd = -1
        if self._spool is None:
            self._loop = asyncio.get_running_loop()
            self._loop.add_reader(self.read_fd, self._read)

    def _read(self) -> None:
        try:
            data = os.read(self.read_fd, READ_CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.stop()
            return
        self._keep(data)

    def _keep(self, data: bytes) -> None:
        room = max(0, self.limit - self._kept)
        self._chunks.append(data[:room])
        self._kept += min(room, len(data))
        self.dropped += max(0, len(data) - room)

    def stop(self) -> None:
        """Stop reading and close the pipe (a descendant still writing gets EPIPE)."""
        if self.write_fd >= 0:
            os.close(self.write_fd)
            self.write_fd = -1
        if self.read_fd >= 0:
            if self._loop is not None:
                self._loop.remove_reader(self.read_fd)
            os.close(self.read_fd)
            self.read_fd = -1

    def text(self) -> str:
        """What was written so far (what is waiting in the pipe included)."""
        if self._spool is not None:
            self._chunks, self._kept, self.dropped = [], 0, 0
            with open(self._spool, "rb") as spool:
                self._keep(spool.read(self.limit))
                self.dropped = max(0, os.fstat(spool.fileno()).st_size - self._kept)
        elif self.read_fd >= 0:
            self._read()
        text = b"".join(self._chunks).decode("utf-8", errors="replace")
        if self.dropped:
            text += f"\n[nbci: {self.dropped} more bytes of kernel output cut]\n"
        return text


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
    tag: str = ""  # its TAG_VARIABLE value
    output: Optional[KernelOutput] = None

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
        procs = []
        for pid in [self.pid] + descendants(self.pid):
            try:
                procs.append(psutil.Process(pid))
            except psutil.Error:
                pass
        return procs

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
        """SIGKILL the kernel's process group, every descendant, and every process that left its
        tree for this one (re-parented orphans in its session or carrying its tag)."""
        pid = self.pid
        if pid is None:
            return
        pids = [pid] + descendants(pid)
        if hasattr(os, "killpg"):
            try:
                os.killpg(os.getpgid(pid), signal.SIGKILL)
            except (OSError, ProcessLookupError):
                pass
        kill_pids(pids)
        kill_orphans(pid, self.tag)


def reap(pids: Iterable[int]) -> None:
    """Collect the exit status of our own killed children, so they leave no zombies."""
    for pid in pids:
        try:
            os.waitpid(pid, 0)
        except OSError:
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
        self.context = zmq.asyncio.Context()  # one for every kernel's manager and client: no per-kernel set-up and teardown
        self.run_tag = secrets.token_hex(6)
        self.subreaper = become_subreaper()
        harden_process()  # this process drives kernels: they must not read its memory
        self.zygotes = Zygotes(self.runtime_dir, self.subreaper) if kernel_start == "fork" else None
        self._count = 0
        self._ipykernel: Dict[str, bool] = {}
        self.live: Set[Kernel] = set()

    def is_ipykernel(self, name: str) -> bool:
        """Whether kernelspec ``name`` launches ipykernel, looked up once per run."""
        if name not in self._ipykernel:
            self._ipykernel[name] = is_ipykernel(name)
        return self._ipykernel[name]

    def _manager(self, name: str) -> AsyncKernelManager:
        self._count += 1
        stem = self.runtime_dir / f"k{self._count}"
        manager = AsyncKernelManager(kernel_name=name, connection_file=str(stem) + ".json", context=self.context)
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
        extra = [HIST_FILE_ARG] if self.is_ipykernel(request.name) else []
        if self.zygotes is not None:
            manager.kernel_id = manager.kernel_id or str(uuid.uuid4())
            manager.provisioner = ForkProvisioner(kernel_id=manager.kernel_id, kernel_spec=manager.kernel_spec,
                                                  parent=manager)
            manager.provisioner.zygotes = self.zygotes
        tag = f"{self.run_tag}-{self._count}"
        output = KernelOutput(self.runtime_dir)
        try:
            await manager.start_kernel(cwd=str(request.cwd), extra_arguments=extra, stdout=output.write_fd,
                                       stderr=output.write_fd, env=kernel_environment(os.environ, tag))
        except BaseException:
            output.stop()
            raise
        output.start()
        client = manager.client(context=self.context)
        connect_bounded(client)  # huge outputs are cut before decoding, or refused
        kernel = Kernel(request.name, manager, client, tag=tag, output=output)
        self.live.add(kernel)
        try:
            # No stdin channel, so input() raises StdinNotImplementedError at once; no heartbeat thread:
            # the manager polls the kernel process to tell whether it is alive.
            kernel.client.start_channels(stdin=False, hb=False)
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
        if kernel.output is not None:
            kernel.output.stop()

    def kill_all(self) -> None:
        """Synchronously kill every kernel still alive: the last resort on cancellation."""
        for kernel in list(self.live):
            kernel.kill_tree()

    def close(self) -> None:
        """Kill every kernel and every process any kernel left behind; stop the templates."""
        self.kill_all()
        if self.zygotes is not None:
            self.zygotes.close()
        if self.subreaper:
            kill_strays()
        self.context.destroy(linger=0)
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
