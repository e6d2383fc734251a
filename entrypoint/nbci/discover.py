"""Find the notebooks to run: globs and files in, sorted relative POSIX paths out.

Hidden folders (``.git``, ``.ipynb_checkpoints``, ...) are skipped unless a pattern names them
explicitly, and so is the output folder, so a second run never picks up the first run's copies.
"""

from __future__ import annotations

import fnmatch
import glob
import os
import re
from pathlib import Path, PurePosixPath
from typing import Iterable, List, Optional, Pattern

from nbci.errors import ConfigError

GLOB_CHARS = re.compile(r"[*?\[]")
CHECKPOINTS = ".ipynb_checkpoints"


def translate_glob(pattern: str) -> Pattern[str]:
    """Compile a ``/``-separated glob (``**`` spans folders, ``*`` does not) to a regex."""
    parts = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            parts.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            parts.append(".*")
            i += 2
        elif pattern[i] == "*":
            parts.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            parts.append("[^/]")
            i += 1
        elif pattern[i] == "[" and bracket_end(pattern, i) > 0:
            end = bracket_end(pattern, i)
            # fnmatch's own class regex (ranges, "!", escapes), kept from matching a separator
            parts.append("(?!/)" + fnmatch.translate(pattern[i:end + 1])[len("(?s:"):-len(")\\Z")])
            i = end + 1
        else:
            parts.append(re.escape(pattern[i]))
            i += 1
    try:
        return re.compile("".join(parts) + r"\Z")
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


def discover(
    patterns: Iterable[str],
    root: Path,
    excludes: Iterable[str] = (),
    output_dir: Optional[Path] = None,
) -> List[str]:
    """Return the notebooks the patterns select, as sorted, unique paths relative to ``root``.

    A plain path must exist; a glob may match nothing. Raises ``ConfigError`` for a named file
    that is missing or not a notebook, and for patterns that leave ``root``.
    """
    root = Path(root).resolve()
    exclude_res = [translate_glob(relative_pattern(e, root) or "**") for e in excludes]
    skip_prefix = None
    if output_dir is not None:
        out = os.path.relpath(Path(output_dir).resolve(), root).replace(os.sep, "/")
        if out != "." and not out.startswith("../"):
            skip_prefix = out.rstrip("/") + "/"
    found = set()
    for pattern in patterns:
        rel = relative_pattern(pattern, root)
        for path in expand(rel, root, pattern):
            if skip_prefix and path.startswith(skip_prefix):
                continue
            if any(r.match(path) for r in exclude_res):
                continue
            found.add(path)
    return sorted(found)


def expand(rel: str, root: Path, original: str) -> List[str]:
    """The notebooks one normalised pattern names: the file itself, a folder's tree, or glob matches."""
    if not GLOB_CHARS.search(rel):
        target = root / rel
        try:
            is_dir, exists = target.is_dir(), target.exists()
        except OSError as exc:  # e.g. a name too long for the file system
            raise ConfigError(f"{original}: {exc.strerror}; check the path") from None
        if is_dir:
            return expand(f"{rel}/**/*.ipynb" if rel else "**/*.ipynb", root, original)
        if not exists:
            raise ConfigError(f"{original}: no such notebook; check the path or quote a glob")
        if target.suffix != ".ipynb":
            raise ConfigError(f"{original}: not a .ipynb file; name notebooks or globs like 'docs/**/*.ipynb'")
        return [rel]
    explicit_hidden = is_hidden(rel)
    matches = glob.glob(os.path.join(glob.escape(str(root)), rel), recursive=True)
    paths = []
    for match in matches:
        relpath = os.path.relpath(match, root).replace(os.sep, "/")
        if not match.endswith(".ipynb") or not os.path.isfile(match):
            continue
        if CHECKPOINTS in relpath.split("/") or (is_hidden(relpath) and not explicit_hidden):
            continue
        paths.append(relpath)
    return paths
