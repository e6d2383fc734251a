"""What a notebook's kernel looked at, recorded inside the kernel for the execution cache.

This module is run inside the kernel (standard library only, in globals of its own) before the
first cell: ``install`` adds an audit hook for opens, listings and ``sqlite3.connect``, wraps
``os.stat``/``os.lstat`` (existence and kind checks raise no audit event) and the environment's
item access. Each question is answered at its first asking, as the notebook saw it. nbci asks for
``Recording.report()`` through ``REPORT_EXPRESSION``, which starts from a literal and so uses
nothing of the notebook's namespace; a second class posing as it makes the report unusable, and a
report that is not ``complete`` is not cached. ``stat_answer`` and ``listing_answer`` are the same
code nbci uses to check an entry later, so answers compare exactly.
"""

import hashlib
import json
import os
import stat
import sys
import threading
from importlib.util import source_from_cache

MODULE = "_nbci_reads"  # the name the recorder's globals carry in the kernel
REPORT_EXPRESSION = ("[c.report() for c in ().__class__.__base__.__subclasses__() "
                     f"if c.__module__ == {MODULE!r} and c.__qualname__ == 'Recording']")
MAX_QUESTIONS = 20000  # more than this and the report is not complete: not cached
MAX_QUESTION_CHARS = 2 * 2**20  # the same for the length of all questions together
MAX_LISTED = 100000  # names in one listed folder; more and the listing is not cached
STAT, SCANDIR = os.stat, os.scandir  # as they were before ``install`` wrapped them


def stat_answer(path, stat_path=STAT):
    """What a check of ``path`` shows: ``missing``, ``folder``, ``file:SIZE`` or ``other``."""
    try:
        info = stat_path(path)
    except (FileNotFoundError, NotADirectoryError):
        return "missing"
    except OSError as exc:
        return f"error:{exc.errno}"
    if stat.S_ISDIR(info.st_mode):
        return "folder"
    return f"file:{info.st_size}" if stat.S_ISREG(info.st_mode) else "other"


def listing_answer(path, scandir=SCANDIR, limit=MAX_LISTED):
    """What listing folder ``path`` shows: the hash of its names (folders marked), ``missing``,
    ``not-a-folder``, or ``too-many`` past ``limit`` names."""
    names = []
    try:
        with scandir(path) as entries:
            for entry in entries:
                if len(names) == limit:
                    return "too-many"
                names.append(entry.name + ("/" if entry.is_dir() else ""))
    except FileNotFoundError:
        return "missing"
    except NotADirectoryError:
        return "not-a-folder"
    except OSError as exc:
        return f"error:{exc.errno}"
    return "names:" + hashlib.sha256("\0".join(sorted(names)).encode("utf-8", "surrogateescape")).hexdigest()


class Recording:
    """The questions the notebook asked (``kind:path`` or ``env:NAME``) and their first answers."""

    answers = {}
    question_chars = 0
    opened = {}  # real path -> modification time (ns) when first opened for reading
    produced = set()  # paths the notebook created itself: what it later sees there is its own doing
    written_env = set()  # variables the notebook set before reading them
    complete = True
    intact = None  # a function: whether every wrapper is still in place

    @classmethod
    def report(cls):
        """The recording as JSON, with the source of every module imported from below the root."""
        for module in list(sys.modules.values()):
            path = getattr(module, "__file__", None)
            if isinstance(path, str):
                hook("open", (path, "r", 0))
        return json.dumps({"complete": cls.complete and cls.intact(), "answers": cls.answers,
                           "opened": cls.opened})


ROOT = ""  # the working directory's real path, with a trailing separator
IMPORT_SYSTEM = "<frozen importlib._bootstrap_external>"  # the file name of the import system's frames
GUARD = threading.local()  # set while the recorder itself works: its own calls are not the notebook's


def ask(question, answer):
    """Keep the first answer (``answer()``) to ``question``; past ``MAX_QUESTIONS`` the recording is incomplete."""
    if question in Recording.answers:
        return
    Recording.question_chars += len(question)
    if len(Recording.answers) >= MAX_QUESTIONS or Recording.question_chars > MAX_QUESTION_CHARS:
        Recording.complete = False
        return
    Recording.answers[question] = answer()


def resolve(path, dir_fd=None):
    """The real path ``path`` names (descriptors through /proc), or None when outside the root or
    something the notebook created."""
    if isinstance(path, int):
        path = f"/proc/self/fd/{path}"
    path = os.fsdecode(path) if path is not None else "."
    if dir_fd is not None and not os.path.isabs(path):
        path = os.path.join(f"/proc/self/fd/{dir_fd}", path)
    real = os.path.realpath(path)
    if real.endswith(".pyc") and "__pycache__" in real:
        real = source_from_cache(real)
    inside = real == ROOT[:-1] or real.startswith(ROOT)
    return real if inside and not is_produced(real) else None


def is_produced(real):
    """Whether ``real`` is, or is below, something the notebook created."""
    while real.startswith(ROOT):
        if real in Recording.produced:
            return True
        real = os.path.dirname(real)
    return False


def note_check(path, dir_fd=None):
    """An existence or kind check (``os.stat``, ``os.path.exists``, ``Path.is_file``...)."""
    real = resolve(path, dir_fd)
    if real is not None:
        ask("stat:" + real, lambda: stat_answer(real))


def note_listing(path):
    """A folder listed (``os.listdir``, ``os.scandir``, ``glob``, ``Path.iterdir``/``glob``, ``os.walk``);
    not the import system's listings of ``sys.path`` (what it imports is asked for, not their names)."""
    if sys._getframe(2).f_code.co_filename == IMPORT_SYSTEM:
        return
    real = resolve(path)
    if real is not None:
        ask("list:" + real, lambda: listing_answer(real))


def note_open(path, mode="r", flags=0):
    """An open: a read asks for a regular file's content (else for what is there); a file the
    notebook creates or truncates is its own from then on (what it read before stays asked)."""
    real = resolve(path)
    if real is None:
        return
    if mode is None:
        creates = flags & os.O_TRUNC or (flags & os.O_CREAT and flags & os.O_EXCL)
        reads = flags & os.O_ACCMODE != os.O_WRONLY
    else:
        creates, reads = "w" in mode or "x" in mode, "r" in mode or "+" in mode
    if creates:
        note_check(os.path.dirname(real))
        produce(real)
        return
    if not reads:
        return
    answer = stat_answer(real)
    if not answer.startswith("file:"):
        Recording.complete = Recording.complete and answer in ("missing", "folder")  # a FIFO, a device
        ask("stat:" + real, lambda: answer)
    elif "file:" + real not in Recording.answers:
        ask("file:" + real, lambda: answer)
        Recording.opened[real] = STAT(real).st_mtime_ns


def note_database(database):
    """``sqlite3.connect``: the database file is read (an in-memory one is nothing; a URI is not followed)."""
    name = os.fsdecode(os.fspath(database))
    if name.startswith("file:"):
        Recording.complete = False
    elif name not in ("", ":memory:"):
        note_open(name, "r+")


def note_created(path, dir_fd=-1):
    """A folder made or a file renamed into place: the notebook's own when nothing was there."""
    real = resolve(path, None if dir_fd == -1 else dir_fd)
    if real is not None and stat_answer(real) == "missing":
        produce(real)


def produce(real):
    """Note that the notebook created ``real`` (bounded as the questions are)."""
    if len(Recording.produced) >= MAX_QUESTIONS:
        Recording.complete = False
    else:
        Recording.produced.add(real)


EVENTS = {
    "open": note_open,
    "os.listdir": note_listing,
    "os.scandir": note_listing,
    "sqlite3.connect": lambda database, *rest: note_database(database),
    "os.mkdir": lambda path, mode, dir_fd: note_created(path, dir_fd),
    "os.rename": lambda src, dst, src_fd, dst_fd: note_created(dst, dst_fd),
    "check": note_check,
}


def hook(event, args):
    """The audit hook (and the wrappers' entry): note what ``event`` asks, never raising into the notebook."""
    if event not in EVENTS or getattr(GUARD, "busy", False):
        return
    GUARD.busy = True
    try:
        EVENTS[event](*args)
    except Exception:
        Recording.complete = False  # something the recorder could not follow: not cached
    finally:
        GUARD.busy = False


def checking(function):
    """``function`` (``os.stat``, ``os.lstat``) noting the path it is asked about."""
    def check(path, *args, **kwargs):
        if not isinstance(path, int):
            hook("check", (path, kwargs.get("dir_fd")))
        return function(path, *args, **kwargs)
    check.__name__, check.__doc__ = function.__name__, function.__doc__
    return check


def environment_reader(environ_class, method, names):
    """``environ_class.method`` noting the variables read (``names``: the name, or ``*``: all of them)."""
    original = getattr(environ_class, method)

    def read(self, *args):
        if self is os.environ or self is os.environb:
            for name in names(self, *args):
                name = os.fsdecode(name)
                if name not in Recording.written_env:
                    ask("env:" + name, lambda: "")
        return original(self, *args)
    return read


def environment_writer(environ_class, method):
    """``environ_class.method`` noting that the notebook set the variable (what it reads next is its own)."""
    original = getattr(environ_class, method)

    def write(self, key, *args):
        if self is os.environ or self is os.environb:
            Recording.written_env.add(os.fsdecode(key))
        return original(self, key, *args)
    return write


def install(root):
    """Start recording what the kernel looks at below folder ``root`` (its real path)."""
    global ROOT
    ROOT = os.path.join(root, "")
    environ_class = type(os.environ)
    wrappers = {
        (os, "stat"): checking(os.stat), (os, "lstat"): checking(os.lstat),
        (environ_class, "__getitem__"): environment_reader(environ_class, "__getitem__", lambda env, key: [key]),
        (environ_class, "__iter__"): environment_reader(environ_class, "__iter__", lambda env: ["*"]),
        (environ_class, "__len__"): environment_reader(environ_class, "__len__", lambda env: ["*"]),
        (environ_class, "__repr__"): environment_reader(environ_class, "__repr__", lambda env: ["*"]),
        (environ_class, "__setitem__"): environment_writer(environ_class, "__setitem__"),
        (environ_class, "__delitem__"): environment_writer(environ_class, "__delitem__"),
    }
    for (owner, name), wrapper in wrappers.items():
        for supports in (os.supports_dir_fd, os.supports_fd, os.supports_follow_symlinks):
            if getattr(owner, name) in supports:
                supports.add(wrapper)  # ``os.stat in os.supports_dir_fd`` stays true
        setattr(owner, name, wrapper)
    Recording.intact = lambda: all(getattr(owner, name) is wrapper for (owner, name), wrapper in wrappers.items())
    sys.addaudithook(hook)
