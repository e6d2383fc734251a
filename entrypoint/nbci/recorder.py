"""What a notebook's kernel looked at, recorded inside the kernel for the execution cache.

This module is run inside the kernel (standard library only, in globals of its own) before the
first cell: ``install`` adds an audit hook for opens, listings, renames, removals, truncations and
``sqlite3.connect``, wraps ``os.stat``/``os.lstat``/``os.access`` (existence and kind checks raise
no audit event) and the environment's item access. Each question is answered at its first asking,
as the notebook saw it; the report adds where each imported module was looked for. nbci asks for
``Recording.report()`` through ``REPORT_EXPRESSION``, which starts from a literal and so uses
nothing of the notebook's namespace; a second class posing as it makes the report unusable, and a
report that is not ``complete`` is not cached. ``stat_answer`` and ``listing_answer`` are the same
code nbci uses to check an entry later (with ``scan_answer``, ``access_answer``, ``link_answer`` and
``import_answer``), so answers compare exactly.
"""

import functools
import hashlib
import itertools
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
STAT, LSTAT, ACCESS, SCANDIR = os.stat, os.lstat, os.access, os.scandir  # as before ``install`` wrapped them
MODULE_SUFFIXES = (".py", ".pyc", ".pyw", ".so", ".pyd")  # how the files an import could load end


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


class TooMany(Exception):
    """A folder of more than ``MAX_LISTED`` names."""


def folder_entries(path, scandir=SCANDIR, limit=MAX_LISTED):
    """The entries of folder ``path``; ``TooMany`` past ``limit``."""
    with scandir(path) as entries:
        found = list(itertools.islice(entries, limit + 1))
    if len(found) > limit:
        raise TooMany(path)
    return found


def folder_answer(function):
    """``function``, answering ``too-many``, ``missing``, ``not-a-folder`` or ``error:N`` when its
    folder cannot be listed."""
    @functools.wraps(function)
    def answer(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except TooMany:
            return "too-many"
        except FileNotFoundError:
            return "missing"
        except NotADirectoryError:
            return "not-a-folder"
        except OSError as exc:
            return f"error:{exc.errno}"
    return answer


@folder_answer
def listing_answer(path, limit=MAX_LISTED, describe=lambda folder, entry: "/" * entry.is_dir()):
    """What listing folder ``path`` shows: the hash of its names, each with ``describe``'s mark (by
    default folders marked)."""
    names = [entry.name + describe(path, entry) for entry in folder_entries(path, limit=limit)]
    return "names:" + hashlib.sha256("\0".join(sorted(names)).encode("utf-8", "surrogateescape")).hexdigest()


def scan_answer(path):
    """What ``os.scandir`` of folder ``path`` lets the notebook see: each name with ``stat_answer``
    of it (what ``DirEntry.stat`` and ``is_file`` tell) and whether it is a link."""
    return listing_answer(path, describe=lambda folder, entry: "/" + stat_answer(os.path.join(folder, entry.name))
                          + "/link" * entry.is_symlink())


def access_answer(path, access=ACCESS):
    """What ``os.access`` tells of ``path``: ``stat_answer`` and which of read, write, execute are allowed."""
    allowed = "".join(letter if access(path, mode) else "-" for letter, mode in zip("rwx", (os.R_OK, os.W_OK, os.X_OK)))
    return f"{stat_answer(path)}:{allowed}"


def link_answer(path, root):
    """Where ``path`` leads: its real path relative to folder ``root`` (ending with a separator), or
    absolute when outside it."""
    real = os.path.realpath(path)
    return os.path.relpath(real, root) if real == root[:-1] or real.startswith(root) else real


@folder_answer
def import_answer(folder, name, own=lambda path: False):
    """What folder ``folder`` holds that an import of ``name`` could load: the JSON list of its
    names ``name`` and ``name.*.py``/``.pyc``/``.so``... (folders marked, with their ``__init__``
    files), leaving out those ``own`` claims."""
    def candidates(path, stem):
        return [entry for entry in folder_entries(path) if (entry.name == stem or entry.name.startswith(stem + ".")
                and entry.name.endswith(MODULE_SUFFIXES)) and not own(entry.path)]
    found = []
    for entry in candidates(folder, name):
        found.append(entry.name + "/" * entry.is_dir())
        if entry.is_dir() and entry.name == name:
            found += [f"{name}/{init.name}" for init in candidates(entry.path, "__init__")]
    return json.dumps(sorted(found))


class Recording:
    """The questions the notebook asked (``kind:path`` or ``env:NAME``) and their first answers."""

    answers = {}
    question_chars = 0
    opened = {}  # real path -> modification time (ns) when first opened for reading
    produced = set()  # paths the notebook created itself: what it later sees there is its own doing
    written_env = set()  # variables the notebook set before reading them
    folders = set()  # the working directories the kernel had: what '' on sys.path meant
    search_path = []  # sys.path when recording started
    complete = True
    intact = None  # a function: whether every wrapper is still in place

    @classmethod
    def report(cls):
        """The recording as JSON, with where every imported module was looked for below the root
        and the source of every module imported from below it."""
        hook("imports", ())
        for module in list(sys.modules.values()):
            path = getattr(module, "__file__", None)
            if isinstance(path, str):
                hook("open", (path, "r", 0))
        return json.dumps({"complete": cls.complete and cls.intact(), "answers": cls.answers,
                           "opened": cls.opened})


ROOT = ""  # the working directory's real path, with a trailing separator
IMPORT_SYSTEM = "<frozen importlib._bootstrap_external>"  # the file name of the import system's frames
NAMES_ONLY = ("os", "glob", "pathlib")  # modules whose ``os.scandir`` calls use only names and kinds
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


def locate(path, dir_fd=None):
    """The absolute path ``path`` names, not resolved (descriptors through /proc)."""
    if isinstance(path, int):
        path = f"/proc/self/fd/{path}"
    path = os.fsdecode(path) if path is not None else "."
    if dir_fd is not None and dir_fd != -1 and not os.path.isabs(path):
        path = os.path.join(f"/proc/self/fd/{dir_fd}", path)
    return os.path.abspath(path)


def resolve(path, dir_fd=None):
    """The real path ``path`` names, or None when outside the root or something the notebook
    created; a path below the root that leads elsewhere asks where it leads."""
    asked = locate(path, dir_fd)
    real = os.path.realpath(asked)
    if real != asked and asked.startswith(ROOT) and not is_produced(asked):
        ask("link:" + asked, lambda: link_answer(asked, ROOT))
    if real.endswith(".pyc") and "__pycache__" in real:
        real = source_from_cache(real)
    inside = real == ROOT[:-1] or real.startswith(ROOT)
    return real if inside and not is_produced(real) else None


def entry_of(path, dir_fd=-1):
    """The folder entry ``path`` names (its folder resolved, not the entry itself: a link stays a
    link), or None when outside the root or something the notebook created."""
    asked = locate(path, dir_fd)
    entry = os.path.join(os.path.realpath(os.path.dirname(asked)), os.path.basename(asked))
    return entry if entry.startswith(ROOT) and not is_produced(entry) else None


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


def note_access(path, dir_fd=None):
    """An ``os.access`` check: what is there and what the kernel may do with it."""
    real = resolve(path, dir_fd)
    if real is not None:
        ask("access:" + real, lambda: access_answer(real))


def note_listing(path, scan=False):
    """A folder listed (``os.listdir``, ``os.scandir``, ``glob``, ``Path.iterdir``/``glob``, ``os.walk``);
    not the import system's listings of ``sys.path`` (what it imports is asked for, not their names).
    A ``scan`` by anything but those stdlib walkers asks for each entry's kind and size too (``DirEntry.stat``)."""
    caller = sys._getframe(2)
    if caller.f_code.co_filename == IMPORT_SYSTEM:
        return
    real = resolve(path)
    if real is None:
        return
    if scan and str(caller.f_globals.get("__name__")).partition(".")[0] not in NAMES_ONLY:
        ask("scan:" + real, lambda: scan_answer(real))
    else:
        ask("list:" + real, lambda: listing_answer(real))


def note_open(path, mode="r", flags=0):
    """An open: a read asks for a regular file's content (else for what is there); a file the
    notebook creates or truncates is its own from then on (what it read before stays asked)."""
    real = resolve(path)
    if real is None:
        return
    if mode is None:
        exclusive = flags & os.O_CREAT and flags & os.O_EXCL
        creates, reads = flags & os.O_TRUNC or exclusive, flags & os.O_ACCMODE != os.O_WRONLY
    else:
        exclusive = "x" in mode
        creates, reads = "w" in mode or exclusive, "r" in mode or "+" in mode
    if creates:
        note_check(os.path.dirname(real))
        answer = stat_answer(real)
        if exclusive or not (answer == "missing" or answer.startswith("file:")):
            ask("stat:" + real, lambda: answer)  # whether the open fails depends on what is there
        if answer == "missing" or answer.startswith("file:") and not exclusive:
            produce(real)
    elif reads:
        note_read(real)


def note_read(real):
    """A read of ``real``: a regular file's content, else what is there (a FIFO or device: not cached)."""
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
    """A folder made: whether something was there decides whether making it fails; the notebook's own
    when nothing was."""
    real = resolve(path, dir_fd)
    if real is not None:
        answer = stat_answer(real)
        ask("stat:" + real, lambda: answer)
        if answer == "missing":
            produce(real)


def note_removed(path, dir_fd=-1):
    """A file removed: what was there is asked, and the name is the notebook's own from then on."""
    entry = entry_of(path, dir_fd)
    if entry is not None:
        note_check(entry)
        if stat_answer(entry, LSTAT) not in ("missing", "folder"):
            produce(entry)


def note_moved(src, dst, src_dir_fd=-1, dst_dir_fd=-1):
    """A rename or replace: what ``src`` held is read (a folder cannot be told whole: not cached),
    what ``dst`` held is asked, and both names are the notebook's own from then on."""
    source, target = entry_of(src, src_dir_fd), entry_of(dst, dst_dir_fd)
    moved = stat_answer(locate(src, src_dir_fd), LSTAT)
    if source is not None and moved == "folder":
        Recording.complete = False
    elif source is not None and moved == "missing":
        note_check(source)  # the rename fails
    elif source is not None:
        note_open(source, "r")
        produce(source)
    if target is not None and moved != "missing":
        note_check(target)
        replaced = stat_answer(target, LSTAT)
        if replaced == "missing" or "folder" not in (moved, replaced):
            produce(target)
        elif moved == replaced:
            Recording.complete = False  # a folder onto a folder: replaced only when that one is empty


def note_imports():
    """Where each imported module was looked for below the root: what could provide it in each
    search folder there (``sys.path``, '' being each working directory the kernel had; a
    submodule's package ``__path__``), and so where a new file would shadow it."""
    Recording.folders.add(os.getcwd())
    top = search_folders(Recording.search_path + sys.path)
    for name, module in list(sys.modules.items()):
        spec = getattr(module, "__spec__", None)
        package, _, tail = str(name).rpartition(".")
        if spec is None or spec.origin in ("built-in", "frozen") or not tail.isidentifier():
            continue  # found before any folder is searched, or never imported by that name
        folders = search_folders(getattr(sys.modules.get(package), "__path__", None) or []) if package else top
        for folder in folders:
            ask("import:" + os.path.join(folder, tail), lambda: import_answer(folder, tail, own=is_produced))


def search_folders(entries):
    """The real paths below the root (and not the notebook's own) of import search path ``entries``."""
    found = []
    for entry in list(entries):
        if not isinstance(entry, str):
            continue
        for folder in Recording.folders if not os.path.isabs(entry) else [""]:
            real = os.path.realpath(os.path.join(folder, entry))
            if real.startswith(ROOT) or real == ROOT[:-1]:
                if real not in found and not is_produced(real):
                    found.append(real)
    return found


def produce(real):
    """Note that the notebook created ``real`` (bounded as the questions are)."""
    if len(Recording.produced) >= MAX_QUESTIONS:
        Recording.complete = False
    else:
        Recording.produced.add(real)


EVENTS = {
    "open": note_open,
    "os.listdir": note_listing,
    "os.scandir": functools.partial(note_listing, scan=True),  # a partial adds no frame: the caller stays two up
    "sqlite3.connect": lambda database, *rest: note_database(database),
    "os.mkdir": lambda path, mode, dir_fd: note_created(path, dir_fd),
    "os.rename": note_moved,
    "os.remove": note_removed,
    "os.truncate": lambda path, length: note_open(path, "r"),  # what is left depends on what was there
    "os.chdir": lambda path: Recording.folders.add(os.path.realpath(locate(path))),
    "check": note_check,
    "access": note_access,
    "imports": note_imports,
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


def checking(function, event="check"):
    """``function`` (``os.stat``, ``os.lstat``, ``os.access``) noting the path it is asked about as ``event``."""
    def check(path, *args, **kwargs):
        if not isinstance(path, int):
            hook(event, (path, kwargs.get("dir_fd")))
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
    Recording.folders.add(os.getcwd())
    Recording.search_path = list(sys.path)
    environ_class = type(os.environ)
    wrappers = {
        (os, "stat"): checking(os.stat), (os, "lstat"): checking(os.lstat),
        (os, "access"): checking(os.access, "access"),
        (environ_class, "__getitem__"): environment_reader(environ_class, "__getitem__", lambda env, key: [key]),
        (environ_class, "__iter__"): environment_reader(environ_class, "__iter__", lambda env: ["*"]),
        (environ_class, "__len__"): environment_reader(environ_class, "__len__", lambda env: ["*"]),
        (environ_class, "__repr__"): environment_reader(environ_class, "__repr__", lambda env: ["*"]),
        (environ_class, "__setitem__"): environment_writer(environ_class, "__setitem__"),
        (environ_class, "__delitem__"): environment_writer(environ_class, "__delitem__"),
    }
    for (owner, name), wrapper in wrappers.items():
        for supports in (os.supports_dir_fd, os.supports_fd, os.supports_follow_symlinks, os.supports_effective_ids):
            if getattr(owner, name) in supports:
                supports.add(wrapper)  # ``os.stat in os.supports_dir_fd`` stays true
        setattr(owner, name, wrapper)
    Recording.intact = lambda: all(getattr(owner, name) is wrapper for (owner, name), wrapper in wrappers.items())
    sys.addaudithook(hook)
