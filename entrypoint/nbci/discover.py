"""Find the notebooks to run: globs and files in, sorted relative POSIX paths out.

Hidden folders (``.git``, ``.ipynb_checkpoints``, ...) and folders named like the default output
folder (``nbci-output``) are skipped unless a pattern names them explicitly, and so is every folder
that is an nbci output (it holds ``files.MARKER``, or nbci's ``results.json``: a downloaded artifact
has no hidden marker), so no run ever picks up an earlier run's copies, whatever ``--output-dir`` it
was given. The walk follows a link
to a folder only when the folder's real path is inside the working directory and was not walked
already: a link loop ends, a link out of the repository is not followed. A notebook that is a
link to a file outside is still listed, and refused when it is read (``files``).
"""

from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Dict, FrozenSet, Iterable, Iterator, List, Optional, Pattern, Set, Tuple

from nbci.errors import ConfigError
from nbci.files import MARKER, OUTPUT_FOLDER, UnsafePath, inside, is_marked, open_inside
from nbci.text_notebooks import TEXT_EXTENSIONS, is_text_path, looks_like_notebook

GLOB_CHARS = re.compile(r"[*?\[]")
CHECKPOINTS = ".ipynb_checkpoints"
MAX_GLOB_CHARS = 1024
MAX_GLOBS = 1000  # each pattern's glob walks the tree, and every exclude is tried on every notebook
ANY_CHAR = re.compile(r".", re.DOTALL)
ONE_CHAR = re.compile(r"[^/]")  # in one folder or file name
CACHED_STEPS = 4096  # transitions a Glob remembers
RESULTS_JSON = re.compile(rb'\A\{\s*"schema_version":\s*\d+,\s*"notebooks":')  # how nbci's results.json starts


@dataclass
class Discovery:
    """What the patterns select: the notebooks, and the text files a glob matched that are not notebooks."""

    notebooks: List[str]
    not_notebooks: List[str]


@dataclass(frozen=True)
class Step:
    """One token of a glob: the character it takes, and whether it repeats; or (``takes`` None) a
    fork that goes on both to the next step and ``skip`` steps on, taking nothing."""

    takes: Optional[Pattern[str]]
    repeats: bool = False
    skip: int = 1

    def accepts(self, char: str) -> bool:
        return self.takes is not None and self.takes.fullmatch(char) is not None

    def passes_to(self, at: int) -> Tuple[int, ...]:
        """The steps this one, at index ``at``, leads to without taking a character."""
        if self.takes is None:
            return at + 1, at + self.skip
        return (at + 1,) if self.repeats else ()


class Glob:
    """A compiled glob: ``match(path)`` follows every way through it at once (no backtracking), so
    it takes time linear in the path, whatever stars the pattern holds."""

    def __init__(self, steps: List[Step]) -> None:
        self.steps = steps
        self.start = self.closure({0})
        self._next: Dict[Tuple[FrozenSet[int], str], FrozenSet[int]] = {}

    def match(self, path: str) -> bool:
        """Whether the glob matches all of ``path``."""
        states = self.start
        for char in path:
            states = self.advance(states, char)
            if not states:
                return False
        return len(self.steps) in states

    def advance(self, states: FrozenSet[int], char: str) -> FrozenSet[int]:
        """The steps reached from ``states`` by taking ``char``, remembered for the next path."""
        key = (states, char)
        if key not in self._next:
            if len(self._next) >= CACHED_STEPS:
                self._next.clear()
            taken = {i if self.steps[i].repeats else i + 1
                     for i in states if i < len(self.steps) and self.steps[i].accepts(char)}
            self._next[key] = self.closure(taken)
        return self._next[key]

    def closure(self, states: Set[int]) -> FrozenSet[int]:
        """``states`` and every step they reach by matching nothing."""
        todo, reached = list(states), set(states)
        while todo:
            i = todo.pop()
            for following in self.steps[i].passes_to(i) if i < len(self.steps) else ():
                if following not in reached:
                    reached.add(following)
                    todo.append(following)
        return frozenset(reached)


def translate_glob(pattern: str) -> Glob:
    """Compile a ``/``-separated glob (``**`` spans folders, ``*`` does not) to a ``Glob``."""
    if len(pattern) > MAX_GLOB_CHARS:
        raise ConfigError(f"a glob of {len(pattern)} characters is over nbci's limit of {MAX_GLOB_CHARS}: "
                          "shorten it, or use several")
    steps: List[Step] = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            steps += [Step(None, skip=3), Step(ANY_CHAR, repeats=True), Step(re.compile("/"))]  # (?:.*/)?
            i += 3
        elif pattern.startswith("**", i):
            steps.append(Step(ANY_CHAR, repeats=True))
            i += 2
        elif pattern[i] in "*?":
            steps.append(Step(ONE_CHAR, repeats=pattern[i] == "*"))
            i += 1
        elif pattern[i] == "[" and bracket_end(pattern, i) > 0:
            end = bracket_end(pattern, i)
            steps.append(Step(char_class(pattern, pattern[i:end + 1])))
            i = end + 1
        else:
            steps.append(Step(re.compile(re.escape(pattern[i]), re.DOTALL)))
            i += 1
    return Glob(steps)


def char_class(pattern: str, brackets: str) -> Pattern[str]:
    """fnmatch's own regex for a ``[...]`` class (ranges, "!", escapes), kept from matching a separator."""
    try:
        return re.compile("(?!/)" + fnmatch.translate(brackets)[len("(?s:"):-len(")\\Z")], re.DOTALL)
    except re.error as exc:  # Python < 3.11's fnmatch passes reversed ranges such as [z-a] through
        raise ConfigError(f"{pattern!r} is not a valid glob ({exc}): check its [...] character classes") from None


def bracket_end(pattern: str, start: int) -> int:
    """Where the ``]`` closing the class opened at ``start`` is, by fnmatch's rules; -1 if none."""
    i = start + 1
    if pattern.startswith("!", i):
        i += 1
    if pattern.startswith("]", i):
        i += 1
    return pattern.find("]", i)


def relative_pattern(pattern: str, root: Path) -> str:
    """Normalise a user pattern to ``/``-separated and relative to root; refuse escapes."""
    text = pattern.replace("\\", "/") if os.sep == "\\" else pattern
    if os.path.isabs(text):
        try:
            text = Path(text).relative_to(root).as_posix() if not GLOB_CHARS.search(text) else \
                PurePosixPath(os.path.relpath(text, root)).as_posix()
        except ValueError:
            text = os.path.relpath(text, root)
    normal = os.path.normpath(text).replace(os.sep, "/") if text else text
    if normal == ".." or normal.startswith("../") or os.path.isabs(normal):
        raise ConfigError(
            f"pattern {pattern!r} points outside the working directory {root}: "
            "use a path inside it, or change the working directory"
        )
    return "" if normal == "." else normal


def is_hidden(relpath: str) -> bool:
    return any(part.startswith(".") for part in relpath.split("/"))


def discover(patterns: Iterable[str], root: Path, excludes: Iterable[str] = ()) -> List[str]:
    """The notebooks the patterns select, as sorted paths relative to ``root``, one per file."""
    return find(patterns, root, excludes).notebooks


def find(
    patterns: Iterable[str],
    root: Path,
    excludes: Iterable[str] = (),
) -> Discovery:
    """The notebooks the patterns select, as sorted paths relative to ``root``, one per file, and the
    text files their globs matched that are not notebooks.

    A plain path must exist; a glob may match nothing. Raises ``ConfigError`` for a named file
    that is missing, not a notebook file or inside an output folder, for patterns that leave
    ``root``, and for more than ``MAX_GLOBS`` globs.
    """
    root = Path(root).resolve()
    patterns, excludes = list(dict.fromkeys(patterns)), list(dict.fromkeys(excludes))
    globs = len(excludes) + sum(1 for pattern in patterns if GLOB_CHARS.search(pattern))
    if globs > MAX_GLOBS:
        raise ConfigError(f"{globs} globs and excludes are over nbci's limit of {MAX_GLOBS}: use fewer, wider globs")
    exclude_res = [translate_glob(relative_pattern(e, root) or "**") for e in excludes]
    found, passed_over = set(), set()
    for pattern in patterns:
        rel = relative_pattern(pattern, root)
        for path in expand(rel, root, pattern, passed_over):
            if not any(r.match(path) for r in exclude_res):
                found.add(path)
    by_file: Dict[str, str] = {}
    for path in sorted(found, key=lambda p: (p.count("/"), p)):  # the shortest path names a file
        by_file.setdefault(os.path.realpath(root / path), path)
    not_notebooks = [path for path in passed_over if not any(r.match(path) for r in exclude_res)]
    return Discovery(sorted(by_file.values()), sorted(not_notebooks))


def expand(rel: str, root: Path, original: str, passed_over: Set[str]) -> List[str]:
    """The notebooks one normalised pattern names: the file itself, a folder's tree, or glob matches;
    the text files a glob matched that are not notebooks are added to ``passed_over``."""
    if not GLOB_CHARS.search(rel):
        target = root / rel
        try:
            is_dir, exists = target.is_dir(), os.path.lexists(target)
        except OSError as exc:  # e.g. a name too long for the file system
            raise ConfigError(f"{original}: {exc.strerror}; check the path") from None
        if is_dir:
            if not inside(Path(os.path.realpath(target)), root):
                raise ConfigError(f"{original}: a link to a folder outside the working directory; name a folder inside it")
            return expand(f"{rel}/**/*.ipynb" if rel else "**/*.ipynb", root, original, passed_over)
        if not exists:
            raise ConfigError(f"{original}: no such notebook; check the path or quote a glob")
        if target.suffix != ".ipynb" and not is_text_path(rel):
            raise ConfigError(f"{original}: not a notebook file (.ipynb, or a text notebook: "
                              f"{', '.join(TEXT_EXTENSIONS)}); name notebooks or globs like 'docs/**/*.ipynb'")
        marked = marked_folder(rel, root)
        if marked is not None:
            folder, sign = marked
            raise ConfigError(f"{original}: inside {folder or '.'}, a folder nbci writes its output to ({sign}): "
                              "nbci never runs its copies; name the source notebook")
        return [rel]
    regex = translate_glob(rel)
    start = literal_prefix(rel)
    named = rel.split("/")
    notebooks = []
    for path in walk(root, start, include_hidden=is_hidden(rel), include_output=OUTPUT_FOLDER in named):
        if not regex.match(path):
            continue
        if path.endswith(".ipynb") or looks_like_notebook(root, path):
            notebooks.append(path)
        else:
            passed_over.add(path)
    return notebooks


def marked_folder(relpath: str, root: Path) -> Optional[Tuple[str, str]]:
    """The first folder on ``relpath``'s way from ``root`` that is an nbci output folder, with what
    shows it (``output_sign``), or None."""
    parts = relpath.split("/")[:-1]
    for depth in range(len(parts) + 1):
        folder = "/".join(parts[:depth])
        sign = output_sign(root / folder)
        if sign:
            return folder, sign
    return None


def output_sign(folder: Path) -> str:
    """What shows ``folder`` is an nbci output folder: its marker, or a results.json nbci wrote (an
    artifact downloaded without hidden files has no marker); "" when nothing does."""
    if is_marked(folder):
        return f"it holds {MARKER}"
    try:
        with open_inside(Path(os.path.realpath(folder)), "results.json") as handle:  # a regular file: a FIFO never blocks
            head = handle.read(256)
    except (UnsafePath, OSError):
        return ""
    return "it holds nbci's results.json" if RESULTS_JSON.match(head) else ""


def literal_prefix(rel: str) -> str:
    """The folders a glob starts with before its first wildcard: where a walk for it begins."""
    parts = rel.split("/")[:-1]
    literal = []
    for part in parts:
        if GLOB_CHARS.search(part):
            break
        literal.append(part)
    return "/".join(literal)


def walk(root: Path, start: str, include_hidden: bool, include_output: bool = False) -> Iterator[str]:
    """Every ``.ipynb`` and text-notebook candidate below ``root/start`` as a relative path: breadth first, links to folders
    followed only into folders inside ``root`` not walked yet, nbci output folders skipped, and
    folders named ``OUTPUT_FOLDER`` too unless ``include_output``."""
    seen = set()
    queue = [start]
    while queue:
        rel = queue.pop(0)
        folder = root / rel if rel else root
        real = os.path.realpath(folder)
        if real in seen or not inside(Path(real), root) or output_sign(folder):
            continue
        seen.add(real)
        try:
            with os.scandir(folder) as listing:
                entries = sorted(listing, key=lambda entry: entry.name)
        except OSError:
            continue
        for entry in entries:
            name = entry.name
            if name == CHECKPOINTS or (name.startswith(".") and not include_hidden) \
                    or (name == OUTPUT_FOLDER and not include_output):
                continue
            child = f"{rel}/{name}" if rel else name
            try:
                is_dir = entry.is_dir()
            except OSError:
                continue
            if is_dir:
                queue.append(child)
            elif name.endswith((".ipynb",) + TEXT_EXTENSIONS):
                yield child
