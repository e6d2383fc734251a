"""The execution cache: a passed notebook is not run again while nothing that could change it changed.

An entry is found by a key over everything known before the run that can change the verdict or the
outputs: the code cells (sources and the tags that change execution, not markdown, outputs or
counts), the kernel (name, language), the options that change execution, the kernel's environment
(its interpreter and every installed distribution, read from the kernel's own interpreter once per
run), the dependency files from the notebook's folder up to the working directory, and the files
``--cache-inputs`` names. The entry then keeps every question the notebook asked below the working
directory while it ran, with the answer it got (``nbci.recorder``, started by a silent request
before the first cell): a file's content, whether and what a path is, where a link leads, a
folder's names, what could provide each imported module in the folders searched for it, an
environment variable (a slow salted hash, never the value). The entry is stale as soon as one
answer differs. What cannot be told whole (an incomplete recording, a file the notebook changed
after reading it, one too large to hash) is not stored: a miss is safe, a false hit never is.

Files are hashed only when their real path is inside the working directory and they are regular
files of at most ``MAX_HASHED_BYTES`` (a link out, a FIFO or a device is never read).
Only passed notebooks are stored (never failures, never flaky passes), only for ipykernel kernels.
Entries are single JSON files written atomically; a damaged one is a miss with a warning. ``prune``
removes entries older than the maximum age and, oldest first, what exceeds ``MAX_BYTES``.
"""

from __future__ import annotations

import datetime
import fnmatch
import hashlib
import json
import os
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

from nbformat import NotebookNode

from nbci import recorder
from nbci.files import inside, open_inside, write_atomic
from nbci.kernels import without_runner_files
from nbci.outputs import NBVAL_TAGS
from nbci.recorder import access_answer, import_answer, link_answer, listing_answer, scan_answer, stat_answer

ENTRY_VERSION = 3  # entries of earlier versions lack answers this one checks: never reused
MAX_BYTES = 2**30  # the cache folder's size cap after pruning
EXECUTION_TAGS = frozenset({"skip-execution", "raises-exception", "parameters", "injected-parameters"}) | NBVAL_TAGS
DEPENDENCY_FILES = ("requirements*.txt", "environment.yml", "environment.yaml", "pyproject.toml", "*.lock",
                    "conda-lock.yml")
FINGERPRINT_SCRIPT = (
    "import json, sys\n"
    "from importlib import metadata\n"
    "dists = sorted({(d.metadata['Name'] or '', d.version or '') for d in metadata.distributions()})\n"
    "print(json.dumps({'python': sys.version, 'distributions': dists}))\n"
)
MAX_HASHED_BYTES = 2**30  # a larger file read, input or dependency makes its notebook not cacheable
RECORDER_SOURCE = Path(recorder.__file__).read_text(encoding="utf-8")
ENV_ROUNDS = 20000  # PBKDF2 rounds of a variable's hash: a short secret is costly to guess from an entry


def recorder_code(root: Path) -> str:
    """The silent request that starts ``nbci.recorder`` in a kernel, for what it looks at below ``root``:
    run in globals of its own, with builtins as they are before the first cell."""
    source = f"{RECORDER_SOURCE}\ninstall({os.path.realpath(root)!r})\n"
    return (f"exec(compile({source!r}, '<nbci recorder>', 'exec'), "
            f"{{'__name__': {recorder.MODULE!r}, '__builtins__': __import__('builtins').__dict__.copy()}})")


def path_answer(root: Path, relpath: str) -> Optional[str]:
    """What is at ``root/relpath`` now: ``sha256:HEX`` of a regular file, else ``missing``, ``folder``
    or ``other``; None for a link out of ``root`` or a file over ``MAX_HASHED_BYTES`` (never read)."""
    real = os.path.realpath(root / relpath)
    if not inside(Path(real), root):
        return None
    kind = stat_answer(real)
    if not kind.startswith("file:"):
        return kind
    if int(kind[5:]) > MAX_HASHED_BYTES:
        return None
    digest = hashlib.sha256()
    try:
        with open_inside(root, relpath) as handle:
            for block in iter(lambda: handle.read(2**20), b""):
                digest.update(block)
                if handle.tell() > MAX_HASHED_BYTES:
                    return None
    except OSError:  # gone or replaced since: not a file to trust
        return None
    return "sha256:" + digest.hexdigest()


class NotCacheable(Exception):
    """A file the key depends on cannot be hashed: the notebook runs, and is not kept."""


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
    answers: Dict[str, str]  # each question the notebook asked (see ``ExecutionCache.answer``) -> its answer
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
        self.root = Path(os.path.realpath(self.root))
        self._lock = threading.Lock()
        self._fingerprints: Dict[str, str] = {}
        self._folder_hashes: Dict[Path, List[Tuple[str, str]]] = {}
        self._inputs_hash: Optional[str] = None
        self._kernel_environ = without_runner_files(self.environ)
        self._env_answers: Dict[str, str] = {}

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
        if (settings or {}).get("check_outputs", "off") != "off":  # the verdict depends on the committed outputs
            material["committed"] = [(cell.get("execution_count"), cell.get("outputs")) for cell in nb.cells
                                     if cell.get("cell_type") == "code"]
        return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()

    def fingerprint(self, kernel: str) -> str:
        """The kernel's interpreter and installed distributions, asked of the kernel's own Python."""
        with self._lock:
            if kernel not in self._fingerprints:
                self._fingerprints[kernel] = environment_fingerprint(kernel, self.environ)
            return self._fingerprints[kernel]

    def dependencies(self, folder: Path) -> List[Tuple[str, str]]:
        """The dependency files in ``folder`` and every folder above it up to the root, with what is
        there (``path_answer``); ``NotCacheable`` when one cannot be hashed."""
        with self._lock:
            if folder not in self._folder_hashes:
                found: List[Tuple[str, str]] = []
                current = folder
                while inside(current, self.root):
                    try:
                        names = sorted(os.listdir(current))
                    except OSError:
                        names = []
                    for name in names:
                        if any(fnmatch.fnmatch(name, pattern) for pattern in DEPENDENCY_FILES):
                            relpath = (current / name).relative_to(self.root).as_posix()
                            found.append((relpath, self.known_answer(relpath)))
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
                         if p.is_file() and inside(Path(os.path.realpath(p)), self.root)}
                for path in sorted(found):
                    relpath = path.relative_to(self.root).as_posix()
                    digest.update(f"{relpath}\0{self.known_answer(relpath)}\0".encode())
                self._inputs_hash = digest.hexdigest()
            return self._inputs_hash

    def known_answer(self, relpath: str) -> str:
        """``path_answer`` for a file the key depends on; ``NotCacheable`` when it cannot be hashed."""
        answer = path_answer(self.root, relpath)
        if answer is None:
            raise NotCacheable(f"{relpath} is a link out of the working directory or over "
                               f"{MAX_HASHED_BYTES // 2**30} GiB")
        return answer

    # --- answers ------------------------------------------------------------------------------

    def answer(self, question: str) -> Optional[str]:
        """The answer now to a recorded question: ``file:PATH`` (its content), ``stat:PATH`` (what is
        there), ``access:PATH`` (that and what may be done with it), ``list:PATH`` (a folder's names),
        ``scan:PATH`` (its names, kinds and sizes), ``link:PATH`` (where it leads), ``import:FOLDER/NAME``
        (what could provide module NAME there), ``env:NAME`` (a variable's hash, ``*``: all of them);
        paths relative to the root, never followed out of it. None: no answer that could match."""
        kind, _, subject = question.partition(":")
        if kind == "env":
            return self.env_answer(subject)
        if kind == "link":
            return link_answer(self.root / subject, os.path.join(self.root, ""))
        folder, name = os.path.split(subject)
        real = os.path.realpath(self.root / (folder if kind == "import" else subject))
        if not inside(Path(real), self.root):
            return None
        if kind == "file":
            return path_answer(self.root, subject)
        if kind == "import":
            return import_answer(real, name)
        answers = {"stat": stat_answer, "access": access_answer, "list": listing_answer, "scan": scan_answer}
        return answers[kind](real) if kind in answers else None

    def env_answer(self, name: str) -> str:
        """A salted, slow hash of the variable ``name`` as kernels get it (``*``: all of them), or ``unset``."""
        with self._lock:
            if name not in self._env_answers:
                env = self._kernel_environ
                value = json.dumps(sorted(env.items())) if name == "*" else env.get(name)
                self._env_answers[name] = "unset" if value is None else hashlib.pbkdf2_hmac(
                    "sha256", value.encode("utf-8", "surrogateescape"), f"nbci-env:{name}".encode(), ENV_ROUNDS).hex()
            return self._env_answers[name]

    def relative_reads(self, recording: Optional[Mapping[str, Any]]) -> Optional[Dict[str, str]]:
        """The answers to keep from a kernel's recording (``nbci.recorder``), paths relative to the root;
        None when it cannot be trusted whole: incomplete, a folder too large, or a file it read that
        changed since (the notebook wrote it) or cannot be hashed."""
        if not recording or recording.get("complete") is not True:
            return None
        asked, opened = recording.get("answers"), recording.get("opened")
        if not isinstance(asked, dict) or not isinstance(opened, dict) \
                or not all(isinstance(q, str) and isinstance(a, str) and "\0" not in q for q, a in asked.items()):
            return None  # not what the recorder reports
        answers: Dict[str, str] = {}
        for question, seen in asked.items():
            kind, _, path = question.partition(":")
            if kind == "env":
                answers[question] = self.env_answer(path)
                continue
            real = Path(path)
            if not inside(real, self.root) or seen == "too-many":
                return None
            relative = real.relative_to(self.root)
            if any(part in ("site-packages", "__pycache__") for part in relative.parts):
                continue  # installed packages: the environment's fingerprint covers them
            if kind == "file":
                seen = self.read_answer(path, opened.get(path), seen)
                if seen is None:
                    return None
            answers[f"{kind}:{relative.as_posix()}"] = seen
        return answers

    def read_answer(self, real: str, modified: Optional[int], seen: str) -> Optional[str]:
        """The hash of a file the notebook read, when it is still as it was when first opened."""
        try:
            info = os.stat(real)
        except OSError:
            return None
        if info.st_mtime_ns != modified or seen != f"file:{info.st_size}":
            return None
        return path_answer(self.root, os.path.relpath(real, self.root))

    # --- entries ------------------------------------------------------------------------------

    def path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.json"

    def lookup(self, key: str) -> Tuple[Optional[Entry], Optional[str]]:
        """The fresh entry for ``key`` or None (missing, too old, stale), and a warning when the entry
        is damaged (then the notebook runs and its entry is replaced)."""
        path = self.path(key)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(data, dict) and data.get("version") != ENTRY_VERSION:
                return None, None  # written by another nbci version
            entry = Entry(**data)
            if entry.key != key or not isinstance(entry.answers, dict):
                raise ValueError("not this key's entry")
        except FileNotFoundError:
            return None, None
        except (OSError, ValueError, TypeError, RecursionError) as exc:
            return None, f"its execution-cache entry {path} is damaged ({type(exc).__name__}): ran it again"
        if self.max_age is not None and time.time() - entry.created > self.max_age:
            return None, None
        if any(self.answer(question) != answer for question, answer in entry.answers.items()):
            return None, None
        return entry, None

    def store(self, key: str, result: Dict[str, Any], notebook: NotebookNode,
              answers: Optional[Dict[str, str]]) -> None:
        """Keep a passed notebook's result, its executed copy and the answers to what it asked
        (``relative_reads``); nothing when those are unknown."""
        if answers is None:
            return
        entry = Entry(key=key, created=time.time(), result=result, notebook=dict(notebook), answers=answers,
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
