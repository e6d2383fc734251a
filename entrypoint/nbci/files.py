"""Reading notebooks and writing results without trusting the repository's file tree.

A pull request controls every file and link in the working directory. So a notebook is read only
when its real path is inside the working directory and it is a regular file no larger than
``MAX_NOTEBOOK_BYTES`` (a FIFO or a device never blocks the run); nbci's own files are written
into folders whose every component it checked is a real folder (no link to follow), through an
exclusive temporary file renamed over the target (a link standing there is replaced, not
followed). Each output folder nbci writes carries ``MARKER``; discovery never looks inside a
marked folder.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path
from typing import BinaryIO, Union

MAX_NOTEBOOK_BYTES = 100 * 2**20
MARKER = ".nbci-output"
OUTPUT_FOLDER = "nbci-output"  # the default --output-dir: a folder of this name is walked only when named
MARKER_TEXT = "nbci writes this folder (executed notebooks, results.json); notebooks under it are never run.\n"
NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
NONBLOCK = getattr(os, "O_NONBLOCK", 0)


class UnsafePath(OSError):
    """A path nbci will not read or write through; the message says which and why."""


def inside(path: Path, root: Path) -> bool:
    """Whether ``path`` (resolved) is ``root`` or below it."""
    try:
        path.relative_to(root)
        return True
    except ValueError:
        return False


def read_notebook_bytes(root: Path, relpath: str, limit: int = MAX_NOTEBOOK_BYTES + 1) -> bytes:
    """The bytes of ``root/relpath`` (at most ``limit``), a regular file whose real path is inside
    ``root``; else ``UnsafePath``."""
    with open_inside(root, relpath) as handle:
        size = os.fstat(handle.fileno()).st_size
        if size > MAX_NOTEBOOK_BYTES:
            raise UnsafePath(f"it is {size / 2**20:.0f} MiB, over nbci's limit of "
                             f"{MAX_NOTEBOOK_BYTES // 2**20} MiB per notebook: clear its outputs")
        return handle.read(limit)


def open_inside(root: Path, relpath: str) -> BinaryIO:
    """``root/relpath`` open for reading, a regular file whose real path is inside ``root`` (opening
    never blocks on a FIFO); else ``UnsafePath``."""
    real = Path(os.path.realpath(root / relpath))
    if not inside(real, root):
        raise UnsafePath(f"it is a link to {real}, outside the working directory: nbci reads only files inside it")
    try:
        fd = os.open(real, os.O_RDONLY | NOFOLLOW | NONBLOCK)
    except OSError as exc:
        raise UnsafePath(f"cannot open it: {exc.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UnsafePath("it is not a regular file (a FIFO, a device or a socket): nbci reads only files")
    return os.fdopen(fd, "rb")


def ensure_folder(path: Path, base: Path) -> None:
    """Create ``path`` and the folders between ``base`` (trusted, existing) and it, refusing links."""
    current = base
    for part in path.relative_to(base).parts:
        current = current / part
        try:
            info = os.lstat(current)
        except FileNotFoundError:
            os.mkdir(current)
            continue
        if stat.S_ISLNK(info.st_mode):
            raise UnsafePath(f"{current} is a symbolic link: nbci does not write through links; remove it")
        if not stat.S_ISDIR(info.st_mode):
            raise UnsafePath(f"{current} is not a folder; remove it or pick another --output-dir")


def write_atomic(path: Path, data: Union[str, bytes]) -> None:
    """Write ``path`` whole or not at all, through an exclusive temporary file beside it."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name[:100]}.", suffix=".nbci-tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def is_marked(folder: Path) -> bool:
    """Whether ``folder`` is an nbci output folder (holds ``MARKER``)."""
    return os.path.lexists(folder / MARKER)


def mark(folder: Path) -> None:
    """Say in ``folder`` that nbci writes it, so no later discovery runs what it holds."""
    if not is_marked(folder):
        write_atomic(folder / MARKER, MARKER_TEXT)
