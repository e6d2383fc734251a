"""Kernel template ("zygote"): run with the kernel's own interpreter, fork ready-to-run kernels.

Runs in the user's environment, where nbci is not installed: standard library and ipykernel only.

Usage: ``python [FLAGS] _zygote_server.py FD`` where FD is an inherited ``AF_UNIX``/``SOCK_SEQPACKET``
socket to the driver. The interpreter must be started exactly like the kernels it will fork
(same executable, same interpreter flags, the kernels' environment), in a folder nothing is
imported from.

Protocol (one JSON object per message):
  template -> driver, once: ``{"ready": PID}`` after importing ipykernel's machinery, or
      ``{"error": TEXT}``.
  driver -> template: ``{"argv": [...], "module_at": I, "cwd": DIR, "env": {...}, "driver": PID}``
      with three file descriptors attached (SCM_RIGHTS) for the kernel's stdin, stdout and stderr;
      ``argv`` is ``[python, *FLAGS, "-m", MODULE, *args]`` and ``argv[I]`` is its ``"-m"``.
  template -> driver, per request in order: ``{"pid": PID}`` or ``{"error": TEXT}``.
  End of file on the socket: the template kills any kernel it is still setting up and exits.

Each kernel is forked twice (template -> short-lived middle process -> kernel) so that it is
re-parented to the driver, which must be a child subreaper: the kernel's parent is then the
driver, as after a normal start, and ipykernel's own parent-death watch works unchanged. Before the
kernel runs ``MODULE`` as ``__main__`` (``runpy``, as ``python -m`` does) it resets everything a
fresh interpreter would have differently: session and process group, signal handlers and mask,
inherited descriptors, environment, cwd, ``sys.argv``/``sys.orig_argv``/``sys.path``, and
ipykernel's values read from the environment at import time. ``random`` is re-seeded by
``os.fork`` itself. The string-hash seed cannot be changed after interpreter start: the driver only
forks when ``PYTHONHASHSEED`` fixes it.
"""

import sys

del sys.path[0]  # this script's folder: nothing may be imported from it

import json  # noqa: E402  (every module imported here is imported by a normal kernel start too)
import os  # noqa: E402
import runpy  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import time  # noqa: E402

MAX_MESSAGE = 1 << 20
SETUP_TIMEOUT = 10.0  # seconds a new kernel may wait to be re-parented to the driver

INITIAL_PATH = list(sys.path)
INITIAL_MASK = signal.pthread_sigmask(signal.SIG_BLOCK, [])
INITIAL_HANDLERS = {}
for _sig in signal.valid_signals():
    try:
        _handler = signal.getsignal(_sig)
    except (OSError, ValueError):
        continue
    if _handler is not None:
        INITIAL_HANDLERS[_sig] = _handler


class Kernel(Exception):
    """Raised in the forked kernel to unwind the template's loop: carries what to run."""

    def __init__(self, module):
        super().__init__(module)
        self.module = module


def send(sock, message):
    sock.send(json.dumps(message).encode())


def become_kernel(sock, request, fds, ready_w):
    """In the kernel process: reset what a fresh interpreter would have differently."""
    os.setsid()
    driver = int(request["driver"])
    deadline = time.monotonic() + SETUP_TIMEOUT
    while os.getppid() != driver:  # the middle process exits at once; then we belong to the driver
        if time.monotonic() > deadline:
            os.write(ready_w, b"not re-parented to the driver (is it a child subreaper?)")
            os._exit(1)
        os.sched_yield()
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
    for fd in fds:
        if fd > 2:
            os.close(fd)
    os.close(sock.detach())
    signal.set_wakeup_fd(-1)
    for sig, handler in INITIAL_HANDLERS.items():
        if signal.getsignal(sig) is not handler:
            signal.signal(sig, handler)
    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    argv = request["argv"]
    module_at = int(request["module_at"]) + 1
    sys.argv = [argv[module_at]] + list(argv[module_at + 1:])  # runpy puts the module's file in sys.argv[0]
    if hasattr(sys, "orig_argv"):
        sys.orig_argv = list(argv)
    sys.path[:] = [os.getcwd()] + INITIAL_PATH
    from ipykernel.kernelapp import IPKernelApp

    # Trait defaults read from the environment when the template imported ipykernel: use ours.
    IPKernelApp.instance(
        parent_handle=int(os.environ.get("JPY_PARENT_PID") or 0),
        interrupt=int(os.environ.get("JPY_INTERRUPT_EVENT") or 0),
    )
    signal.pthread_sigmask(signal.SIG_SETMASK, INITIAL_MASK)
    os.write(ready_w, b"ok %d" % os.getpid())
    os.close(ready_w)
    raise Kernel(argv[module_at])


def fork_kernel(sock, request, fds):
    """Fork one kernel; return its pid (``Kernel`` is raised in the kernel process itself)."""
    if len(os.listdir("/proc/self/task")) != 1:
        raise RuntimeError("the template has more than one thread; forking it is not safe")
    ready_r, ready_w = os.pipe()
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
    try:
        middle = os.fork()
        if middle == 0:
            try:
                os.close(ready_r)
                if os.fork() == 0:
                    become_kernel(sock, request, fds, ready_w)
            except Kernel:
                raise
            except BaseException as exc:
                try:
                    os.write(ready_w, f"{type(exc).__name__}: {exc}".encode())
                finally:
                    os._exit(1)
            os._exit(0)
    finally:
        if os.getpid() == TEMPLATE_PID:
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
    os.close(ready_w)
    for fd in fds:
        os.close(fd)
    os.waitpid(middle, 0)
    report = b""
    while True:
        chunk = os.read(ready_r, 4096)
        if not chunk:
            break
        report += chunk
    os.close(ready_r)
    if not report.startswith(b"ok "):
        raise RuntimeError(report.decode(errors="replace") or "the kernel died while being set up")
    return int(report[3:])


def serve(sock):
    """Answer fork requests until the driver closes the socket."""
    while True:
        message, fds, _flags, _addr = socket.recv_fds(sock, MAX_MESSAGE, 3)
        if not message:
            return
        try:
            request = json.loads(message)
            if len(fds) != 3:
                raise RuntimeError(f"expected 3 descriptors, got {len(fds)}")
            pid = fork_kernel(sock, request, fds)
        except Kernel:
            raise
        except Exception as exc:
            for fd in fds:
                try:
                    os.close(fd)
                except OSError:
                    pass
            send(sock, {"error": f"{type(exc).__name__}: {exc}"})
        else:
            send(sock, {"pid": pid})


TEMPLATE_PID = os.getpid()


def main():
    sock = socket.socket(fileno=int(sys.argv[1]))
    try:
        import ipykernel.kernelapp  # noqa: F401  (what ipykernel_launcher imports first)
    except Exception as exc:
        send(sock, {"error": f"cannot import ipykernel: {type(exc).__name__}: {exc}"})
        return
    send(sock, {"ready": os.getpid()})
    serve(sock)


if __name__ == "__main__":
    _module = None
    try:
        main()
    except Kernel as _kernel:
        _module = _kernel.module
        del _kernel
    if _module is not None:  # outside the except block: the kernel must not see it as handled
        runpy.run_module(_module, run_name="__main__", alter_sys=True)
