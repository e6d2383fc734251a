"""Forked kernel starts (``--kernel-start fork``): kernels forked from a pre-imported template.

A template process runs the kernel's own interpreter (``_zygote_server.py``), imports what every
ipykernel start imports, and forks one kernel per request, so a start skips ~0.5 s of imports.
``ForkProvisioner`` plugs this into jupyter_client as a kernel provisioner; the rest of the engine
sees an ordinary kernel whose ``provisioner.process`` is a ``ForkedProcess`` (pid, ``poll()``,
``wait()``, ``kill()``; backed by a pidfd).

Contract: a forked kernel is indistinguishable, to the notebook, from a normal start of the same
kernelspec (environment, cwd, ``sys.argv``, ``sys.path``, ``sys.modules``, signals, descriptors,
parent pid, fresh ``random``), except that ``ps`` and ``/proc/PID/{cmdline,environ}`` show the
template's. Interpreter flags in the kernelspec (ipykernel's own spec has ``-Xfrozen_modules=off``)
are given to the template, so they hold for its kernels as for a normal start. Whenever that
cannot be promised the kernel is started normally, and the reason is said once on stderr: not Linux
or no pidfd; the kernelspec is not ``python [FLAGS] -m ipykernel_launcher ...`` (another kernel, or a
flag outside ``FORKABLE_FLAGS``: ``-E``/``-I`` ignore PYTHONHASHSEED, ``-P``/``-I`` change
``sys.path``); custom launch arguments; ``PYTHONHASHSEED`` is not fixed
(the string-hash seed is chosen at interpreter start, so forked kernels would share one); nbci cannot
become a child subreaper (needed to make the driver the kernel's parent).

Variables read only at interpreter start (``INTERPRETER_START_VARS``, and any other variable read
when a module is imported) cannot change after a fork: a template therefore serves only kernels
whose environment equals its own, apart from ``PER_KERNEL_VARS``, which the kernel re-applies.
A kernel with another environment gets its own template (at most ``MAX_TEMPLATES``).

nbci is a child subreaper for the whole run (``kernels.become_subreaper``), which forking needs.
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Dict, List, Optional, Sequence, Set, Tuple

from jupyter_client.provisioning import LocalProvisioner

SERVER = Path(__file__).with_name("_zygote_server.py")
KERNEL_MODULES = ("ipykernel_launcher", "ipykernel")
PER_KERNEL_VARS = ("JPY_PARENT_PID", "JPY_SESSION_NAME", "NBCI_KERNEL_TAG")
INTERPRETER_START_VARS = (
    "PYTHONHASHSEED", "PYTHONPATH", "PYTHONHOME", "PYTHONWARNINGS", "PYTHONSAFEPATH",
    "PYTHONDONTWRITEBYTECODE", "PYTHONUTF8", "PYTHONDEVMODE", "PYTHONOPTIMIZE", "PYTHONIOENCODING",
    "PYTHONUNBUFFERED", "PYTHONNOUSERSITE", "PYTHONUSERBASE", "PYTHONPLATLIBDIR", "PYTHONVERBOSE",
    "PYTHONFAULTHANDLER", "PYTHONTRACEMALLOC", "PYTHONPROFILEIMPORTTIME", "PYTHONMALLOC",
    "PYTHONCOERCECLOCALE", "PYTHONINTMAXSTRDIGITS", "PYTHONPYCACHEPREFIX", "PYTHONNODEBUGRANGES",
    "PYTHONCASEOK", "PYTHONEXECUTABLE", "LC_ALL", "LC_CTYPE", "LANG", "LD_PRELOAD", "LD_LIBRARY_PATH",
)
FORKABLE_FLAGS = frozenset("BbdOqsuv")  # single-letter flags that mean the same in a template and a kernel
VALUED_FLAGS = ("-X", "-W")  # "-X opt" or "-Xopt": also applied at interpreter start, so also the template's
MAX_TEMPLATES = 4
MAX_MESSAGE = 1 << 16
TEMPLATE_TIMEOUT = 60.0  # seconds for a template to import ipykernel


class ForkUnavailable(Exception):
    """This kernel cannot be forked with normal-start semantics; the message says why."""


def split_command(cmd: List[str]) -> Optional[Tuple[List[str], int]]:
    """``(interpreter flags, index of "-m")`` for ``python [FLAGS] -m MODULE ...``, or None."""
    flags: List[str] = []
    index = 1
    while index < len(cmd) and cmd[index] != "-m":
        arg = cmd[index]
        if arg in VALUED_FLAGS and index + 1 < len(cmd):
            flags += cmd[index:index + 2]
            index += 2
        elif (arg[:2] in VALUED_FLAGS and len(arg) > 2) or (arg[:1] == "-" and arg[1:] and set(arg[1:]) <= FORKABLE_FLAGS):
            flags.append(arg)
            index += 1
        else:
            return None
    return (flags, index) if index + 1 < len(cmd) else None


def unavailable_reason(cmd: List[str], env: Dict[str, str], cwd: Optional[str], extra: Dict[str, Any]) -> Optional[str]:
    """Why a kernel launched as ``cmd`` with ``env`` cannot be forked, or None when it can."""
    if not sys.platform.startswith("linux"):
        return "forking kernels needs Linux"
    if not (hasattr(os, "pidfd_open") and hasattr(os, "P_PIDFD") and hasattr(signal, "pidfd_send_signal")):
        return "forking kernels needs pidfd support (Linux 5.4+, Python 3.9+)"
    split = split_command(cmd)
    if split is None or cmd[split[1] + 1] not in KERNEL_MODULES:
        return (f"the kernelspec is not 'python [FLAGS] -m ipykernel_launcher ...' with flags among "
                f"-X, -W, -{''.join(sorted(FORKABLE_FLAGS))}: {cmd[:3]}")
    if extra.get("stdin") is not None or extra.get("independent"):
        return "the kernel has custom launch arguments"
    if cwd is None or not os.path.isdir(cwd):
        return f"the kernel's folder {cwd} does not exist"
    seed = env.get("PYTHONHASHSEED", "")
    if not seed.isdigit():
        return ("PYTHONHASHSEED is not set to a number, and forked kernels would share one string-hash seed "
                "(set PYTHONHASHSEED=0 to fork)")
    return None


TemplateKey = Tuple[str, Tuple[str, ...], Tuple[Tuple[str, str], ...]]


def template_key(cmd: List[str], env: Dict[str, str]) -> TemplateKey:
    """Kernels with equal keys can be forked from one template: same interpreter, flags and environment.

    ``cmd`` must be forkable (``unavailable_reason`` is None)."""
    flags, _ = split_command(cmd) or ([], 0)
    return cmd[0], tuple(flags), tuple(sorted((k, v) for k, v in env.items() if k not in PER_KERNEL_VARS))


class ForkedProcess:
    """A ``subprocess.Popen``-like handle on a forked kernel, a child of this process via a pidfd.

    ``returncode`` follows Popen: the exit code, or ``-N`` when killed by signal N.
    """

    def __init__(self, pid: int, stdin: IO[bytes]) -> None:
        self.pid = pid
        self.pidfd: Optional[int] = os.pidfd_open(pid)
        self.returncode: Optional[int] = None
        self.stdin: Optional[IO[bytes]] = stdin  # the write end of the kernel's stdin pipe, as Popen(stdin=PIPE)
        self.stdout: Optional[IO[bytes]] = None
        self.stderr: Optional[IO[bytes]] = None

    def poll(self) -> Optional[int]:
        """The exit status once the kernel ended (and reap it), else None."""
        if self.returncode is None and self.pidfd is not None:
            info = os.waitid(os.P_PIDFD, self.pidfd, os.WEXITED | os.WNOHANG)
            if info is not None and info.si_pid:
                self.returncode = info.si_status if info.si_code == os.CLD_EXITED else -info.si_status
                os.close(self.pidfd)
                self.pidfd = None
        return self.returncode

    def wait(self, timeout: Optional[float] = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise subprocess.TimeoutExpired(str(self.pid), timeout or 0)
            select.select([self.pidfd], [], [], left)  # readable once the kernel exited
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.poll() is None and self.pidfd is not None:
            signal.pidfd_send_signal(self.pidfd, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)


@dataclass(eq=False)
class Template:
    """One running template process and the socket its requests go through (one at a time)."""

    process: subprocess.Popen
    sock: socket.socket
    flags: Tuple[str, ...] = ()  # its interpreter flags: every kernel it forks has them, then "-m"
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    error: Optional[str] = None

    @classmethod
    async def start(cls, python: str, flags: Sequence[str], env: Dict[str, str], workdir: Path) -> "Template":
        """Start the template: ``python FLAGS _zygote_server.py FD`` in ``workdir`` with ``env``."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with theirs:
            process = subprocess.Popen(
                [python, *flags, str(SERVER), str(theirs.fileno())], env=env, cwd=str(workdir),
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, start_new_session=True,
            )
        ours.setblocking(False)
        template = cls(process, ours, tuple(flags))
        try:
            reply = await template._receive(TEMPLATE_TIMEOUT)
        except BaseException:  # cancelled while it imports: it must not outlive the run
            template.close()
            raise
        if "ready" not in reply:
            template.close()
            raise ForkUnavailable(f"the kernel template did not start: {reply.get('error', reply)}")
        return template

    async def _receive(self, timeout: float) -> Dict[str, Any]:
        loop = asyncio.get_running_loop()
        try:
            data = await asyncio.wait_for(loop.sock_recv(self.sock, MAX_MESSAGE), timeout)
        except (OSError, asyncio.TimeoutError) as exc:
            data, self.error = b"", f"no answer from the kernel template ({type(exc).__name__})"
        if not data:
            self.error = self.error or f"the kernel template exited (status {self.process.poll()})"
            return {"error": self.error}
        return json.loads(data)

    async def fork(self, cmd: List[str], env: Dict[str, str], cwd: str, output: Tuple[int, int] = (1, 2)) -> ForkedProcess:
        """Fork a kernel running ``cmd`` in ``cwd`` with exactly ``env``, its stdout and stderr on the
        ``output`` descriptors; raise ``ForkUnavailable``."""
        request = json.dumps({"argv": cmd, "module_at": 1 + len(self.flags), "env": env, "cwd": cwd,
                              "driver": os.getpid()}).encode()
        async with self.lock:
            if self.error:
                raise ForkUnavailable(self.error)
            stdin_r, stdin_w = os.pipe()
            try:
                socket.send_fds(self.sock, [request], [stdin_r, *output])
            except OSError as exc:
                os.close(stdin_w)
                self.error = f"cannot reach the kernel template: {exc}"
                raise ForkUnavailable(self.error) from None
            finally:
                os.close(stdin_r)
            reply = await self._receive(TEMPLATE_TIMEOUT)
        if "pid" not in reply:
            os.close(stdin_w)
            raise ForkUnavailable(f"the kernel template could not fork: {reply.get('error', reply)}")
        return ForkedProcess(int(reply["pid"]), os.fdopen(stdin_w, "wb"))

    def close(self) -> None:
        """Stop the template: it exits on end of file; kill it if it does not within 2 s."""
        self.sock.close()
        try:
            self.process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class Zygotes:
    """The templates of one run, started on first need and stopped by ``close()``."""

    def __init__(self, workdir: Path, subreaper: bool) -> None:
        self.workdir = workdir
        self._templates: Dict[TemplateKey, "asyncio.Task[Template]"] = {}
        self._notices: Set[str] = set()
        self.subreaper = subreaper  # whether nbci is a child subreaper, so a forked kernel is its child

    def notice(self, reason: str) -> None:
        """Say once per reason why kernels start normally."""
        if reason not in self._notices:
            self._notices.add(reason)
            print(f"nbci: --kernel-start fork: starting kernels normally: {reason}", file=sys.stderr)

    async def fork(self, cmd: List[str], env: Dict[str, str], cwd: str, output: Tuple[int, int] = (1, 2)) -> ForkedProcess:
        """Fork a kernel from the template for ``cmd``'s interpreter and flags and ``env``, its stdout and
        stderr on the ``output`` descriptors; raise ``ForkUnavailable``."""
        if not self.subreaper:
            raise ForkUnavailable("nbci cannot become a child subreaper (prctl failed)")
        key = template_key(cmd, env)
        if key not in self._templates:
            if len(self._templates) >= MAX_TEMPLATES:
                raise ForkUnavailable(f"kernels need more than {MAX_TEMPLATES} different environments")
            template_env = {k: v for k, v in env.items() if k not in PER_KERNEL_VARS}
            self._templates[key] = asyncio.ensure_future(Template.start(key[0], key[1], template_env, self.workdir))
        template = await asyncio.shield(self._templates[key])
        return await template.fork(cmd, env, cwd, output)

    def close(self) -> None:
        for task in self._templates.values():
            if task.done() and not task.cancelled() and task.exception() is None:
                task.result().close()
            else:
                task.cancel()
        self._templates.clear()


def descriptor(target: Any, default: int) -> int:
    """The file descriptor a Popen-style ``stdout``/``stderr`` argument names (None: ours)."""
    if target is None:
        return default
    return target if isinstance(target, int) else target.fileno()


class ForkProvisioner(LocalProvisioner):  # type: ignore[misc]
    """``LocalProvisioner`` that forks the kernel from a template when semantics allow, else spawns it.

    Set ``zygotes`` before the kernel starts. ``process`` is a ``ForkedProcess`` for a forked kernel,
    a ``Popen`` otherwise; ``pid``/``pgid`` are the kernel's (it leads its own session either way).
    """

    zygotes: Optional[Zygotes] = None
    forked: bool = False

    async def launch_kernel(self, cmd: List[str], **kwargs: Any) -> Any:
        cmd = [os.path.expanduser(arg) for arg in cmd]
        env = dict(kwargs.get("env") or os.environ)
        env["JPY_PARENT_PID"] = str(os.getpid())
        cwd = str(kwargs.get("cwd") or os.getcwd())
        extra = {k: v for k, v in kwargs.items() if k not in ("env", "cwd", "kernel_id", "extra_arguments")}
        reason = unavailable_reason(cmd, env, cwd, extra)
        if reason is None and self.zygotes is not None:
            output = (descriptor(kwargs.get("stdout"), 1), descriptor(kwargs.get("stderr"), 2))
            try:
                self.process = await self.zygotes.fork(cmd, env, cwd, output)
            except ForkUnavailable as exc:
                reason = str(exc)
            else:
                self.forked = True
                self.pid = self.pgid = self.process.pid
                self.cwd = cwd
                return self.connection_info
        if self.zygotes is not None and reason:
            self.zygotes.notice(reason)
        return await super().launch_kernel(cmd, **kwargs)
