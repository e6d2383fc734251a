"""The execution cache: a passed notebook is not run again while nothing that could change it changed.

An entry is found by a key over everything known before the run that can change the verdict or the
outputs: the code cells (sources and the tags that change execution, not markdown, outputs or
counts), the kernel (name, language), the options that change execution, the kernel's environment
(its interpreter and every installed distribution, read from the kernel's own interpreter once per
run), the dependency files from the notebook's folder up to the working directory, and the files
``--cache-inputs`` names. The entry then lists every file under the working directory the kernel
read while the notebook ran (``READ_RECORDER``, an audit hook installed by a silent request before
the first cell) with its hash: the entry is stale as soon as one of them changed or disappeared.

Only passed notebooks are stored (never failures, never flaky passes), only for ipykernel kernels
(where reads can be recorded). Entries are single JSON files written atomically; a damaged one is a
miss with a warning. ``prune`` removes entries older than the maximum age and, oldest first, what
exceeds ``MAX_BYTES``.
"""

from __future__ import annotations

import datetime
import fnmatch
import hashlib
import importlib.util
import json
import os
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

from nbformat import NotebookNode

from nbci.files import inside, write_atomic

ENTRY_VERSION = 1
MAX_BYTES = 2**30  # the cache folder's size cap after pruning
EXECUTION_TAGS = frozenset({"skip-execution", "raises-exception", "parameters", "injected-parameters"})
DEPENDENCY_FILES = ("requirements*.txt", "environment.yml", "environment.yaml", "pyproject.toml", "*.lock",
                    "conda-lock.yml")
FINGERPRINT_SCRIPT = (
    "import json, sys\n"
    "from importlib import metadata\n"
    "dists = sorted({(d.metadata['Name'] or '', d.version or '') for d in metadata.distributions()})\n"
    "print(json.dumps({'python': sys.version, 'distributions': dists}))\n"
)
# Run silently in the kernel before the first cell: remember every file opened for reading (and
# every source file imported) below ROOT, on a module object only nbci asks for. Nothing enters the
# notebook's namespace, history or outputs; a failure inside the hook never reaches the notebook.
READ_RECORDER = """
def _nbci_recorder(root):
    import os, sys
    found = set()
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
    def hook(event, args):
        if event != "open":
            return
        try:
            path, mode, flags = args
            if isinstance(path, int) or (mode is not None and any(c in mode for c in "wax+")):
                return
            if mode is None and flags & write_flags:
                return
            real = os.path.realpath(os.fsdecode(path))
            if real.startswith(root):
                found.add(real)
        except Exception:
            pass
    sys.addaudithook(hook)
    store = type(sys)("_nbci_reads")
    store.found = found
    sys.modules["_nbci_reads"] = store
_nbci_recorder(%r)
del _nbci_recorder
"""
READS_EXPRESSION = ("sorted(__import__('sys').modules['_nbci_reads'].found | {getattr(m, '__file__', None) or '' "
                    "for m in list(__import__('sys').modules.values())})")


def file_hash(path: Path) -> Optional[str]:
    """The SHA-256 of a file's content, or None when it cannot be read."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(2**20), b""):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()


def parse_age(text: str) -> Optional[float]:
    """``7d``, ``12h``, ``30m``, ``45s`` or plain seconds; ``0`` means no limit (None)."""
    value = str(text).strip().lower()
    units = {"d": 86400, "h": 3600, "m": 60, "s": 1}
    scale = units.get(value[-1:], 1)
    number = value[:-1] if value[-1:] in units else value
    seconds = float(number) * scale
    if seconds < 0 or seconds != seconds or seconds == float("inf"):
        raise ValueError(f"{text!r} is not an age such as 7d, 12h or 0")
    return seconds or None


@dataclass
class Entry:
    """One cached result: when and where it ran, the executed copy, and what it read."""

    key: str
    created: float
    result: Dict[str, Any]
    notebook: Dict[str, Any]
    reads: Dict[str, str]  # path relative to the root -> SHA-256 when it ran
    commit: Optional[str] = None
    run_id: Optional[str] = None
    version: int = ENTRY_VERSION

    def origin(self) -> Dict[str, Any]:
        """What results.json records as ``cached_from``."""
        ran_at = datetime.datetime.fromtimestamp(self.created, datetime.timezone.utc)
        return {"ran_at": ran_at.isoformat(timespec="seconds"), "commit": self.commit, "run_id": self.run_id,
                "duration": self.result.get("duration")}


@dataclass
class ExecutionCache:
    """The cache folder of one run, with what is worked out once per run (environments, dependency files)."""

    folder: Path
    root: Path
    max_age: Optional[float] = 7 * 86400
    inputs: List[str] = field(default_factory=list)
    options: Dict[str, Any] = field(default_factory=dict)
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._fingerprints: Dict[str, str] = {}
        self._folder_hashes: Dict[Path, List[Tuple[str, Optional[str]]]] = {}
        self._inputs_hash: Optional[str] = None

    # --- keys ---------------------------------------------------------------------------------

    def key(self, nb: NotebookNode, relpath: str, kernel: str, settings: Optional[Dict[str, Any]] = None) -> str:
        """The key of ``nb`` (at ``relpath``) run on ``kernel`` with this run's options and its own settings."""
        cells = [(cell.get("source", ""), sorted(EXECUTION_TAGS & set(cell.get("metadata", {}).get("tags", []))))
                 for cell in nb.cells if cell.get("cell_type") == "code"]
        language = nb.metadata.get("kernelspec", {}).get("language") or nb.metadata.get("language_info", {}).get("name")
        material = {
            "version": ENTRY_VERSION, "path": relpath, "cells": cells, "kernel": kernel, "language": language,
            "options": self.options, "settings": settings, "environment": self.fingerprint(kernel),
            "dependencies": self.dependencies((self.root / relpath).parent), "inputs": self.inputs_hash(),
        }
        return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()

    def fingerprint(self, kernel: str) -> str:
        """The kernel's interpreter and installed distributions, asked of the kernel's own Python."""
        with self._lock:
            if kernel not in self._fingerprints:
                self._fingerprints[kernel] = environment_fingerprint(kernel, self.environ)
            return self._fingerprints[kernel]

    def dependencies(self, folder: Path) -> List[Tuple[str, Optional[str]]]:
        """The dependency files in ``folder`` and every folder above it up to the root, with hashes."""
        with self._lock:
            if folder not in self._folder_hashes:
                found: List[Tuple[str, Optional[str]]] = []
                current = folder
                while inside(current, self.root):
                    try:
                        names = sorted(os.listdir(current))
                    except OSError:
                        names = []
                    for name in names:
                        if any(fnmatch.fnmatch(name, pattern) for pattern in DEPENDENCY_FILES):
                            path = current / name
                            found.append((path.relative_to(self.root).as_posix(), file_hash(path)))
                    if current == self.root:
                        break
                    current = current.parent
                self._folder_hashes[folder] = found
            return self._folder_hashes[folder]

    def inputs_hash(self) -> Optional[str]:
        """One hash over the files ``--cache-inputs`` names inside the root, links resolved (None when
        none are declared); a file outside the root is never read."""
        if not self.inputs:
            return None
        with self._lock:
            if self._inputs_hash is None:
                digest = hashlib.sha256()
                found = {p for pattern in self.inputs for p in self.root.glob(pattern)
                         if p.is_file() and inside(Path(os.path.realpath(p)), self.root.resolve())}
                for path in sorted(found):
                    digest.update(f"{path.relative_to(self.root).as_posix()}\0{file_hash(path)}\0".encode())
                self._inputs_hash = digest.hexdigest()
            return self._inputs_hash

    # --- entries ------------------------------------------------------------------------------

    def path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.json"

    def lookup(self, key: str) -> Tuple[Optional[Entry], Optional[str]]:
        """The fresh entry for ``key`` or None (missing, too old, stale), and a warning when the entry
        is damaged (then the notebook runs and its entry is replaced)."""
        path = self.path(key)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            entry = Entry(**data)
            if entry.version != ENTRY_VERSION or entry.key != key:
                raise ValueError("written by another nbci version")
        except FileNotFoundError:
            return None, None
        except (OSError, ValueError, TypeError, RecursionError) as exc:
            return None, f"its execution-cache entry {path} is damaged ({type(exc).__name__}): ran it again"
        if self.max_age is not None and time.time() - entry.created > self.max_age:
            return None, None
        for read, digest in entry.reads.items():
            if file_hash(self.root / read) != digest:
                return None, None
        return entry, None

    def store(self, key: str, result: Dict[str, Any], notebook: NotebookNode, reads: Iterable[str]) -> None:
        """Keep a passed notebook's result, its executed copy and the hashes of what it read."""
        hashes = {}
        for path in sorted(set(reads)):
            digest = file_hash(self.root / path)
            if digest is not None:
                hashes[path] = digest
        entry = Entry(key=key, created=time.time(), result=result, notebook=dict(notebook), reads=hashes,
                      commit=self.environ.get("GITHUB_SHA") or None, run_id=self.environ.get("GITHUB_RUN_ID") or None)
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(entry.__dict__, default=str))

    def prune(self) -> None:
        """Remove entries past the maximum age, then the oldest while the folder exceeds ``MAX_BYTES``."""
        entries = []
        for path in self.folder.glob("*/*.json"):
            try:
                info = path.stat()
            except OSError:
                continue
            entries.append((info.st_mtime, info.st_size, path))
        now, total = time.time(), sum(size for _, size, _ in entries)
        for mtime, size, path in sorted(entries):
            if (self.max_age is not None and now - mtime > self.max_age) or total > MAX_BYTES:
                try:
                    path.unlink()
                    total -= size
                except OSError:
                    pass

    def relative_reads(self, paths: Iterable[str]) -> List[str]:
        """The recorded paths worth keeping: files under the root, outside hidden folders, sources
        for compiled files; relative to the root."""
        kept = set()
        for raw in paths:
            if not raw:
                continue
            path = raw
            if path.endswith(".pyc") and "__pycache__" in path:
                try:
                    path = importlib.util.source_from_cache(path)
                except ValueError:
                    continue
            real = Path(os.path.realpath(path))
            if not inside(real, self.root) or not real.is_file():
                continue
            relative = real.relative_to(self.root)
            if any(part.startswith(".") or part in ("site-packages", "__pycache__") for part in relative.parts):
                continue
            kept.add(relative.as_posix())
        return sorted(kept)


def environment_fingerprint(kernel: str, environ: Mapping[str, str]) -> str:
    """JSON naming the kernel's interpreter and installed distributions (its kernelspec when it is
    not a Python kernel, or cannot be asked)."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec(kernel)
    except NoSuchKernel:
        return json.dumps({"kernel": kernel, "missing": True})
    # Where the interpreter lives is left out (a runner's temporary folder moves between runs); what
    # it is, its version and every distribution, is asked of it below.
    described = {"argv": [os.path.basename(spec.argv[0])] + spec.argv[1:], "env": spec.env, "language": spec.language}
    if not any("ipykernel" in arg for arg in spec.argv):
        return json.dumps(described, sort_keys=True)
    env = {**environ, **(spec.env or {})}
    try:
        done = subprocess.run([spec.argv[0], "-c", FINGERPRINT_SCRIPT], env=env, capture_output=True, text=True,
                              timeout=120)
        described["interpreter"] = json.loads(done.stdout) if done.returncode == 0 else done.stderr[-500:]
    except (OSError, subprocess.TimeoutExpired, ValueError) as exc:
        described["interpreter"] = f"unknown ({type(exc).__name__})"
    return json.dumps(described, sort_keys=True)
