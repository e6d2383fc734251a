"""``--changed-since REF``: keep the notebooks a change touches, for fast pull-request checks.

A file counts as changed when it differs between the merge base of ``REF`` and ``HEAD`` and the
working tree, or is untracked and not ignored. That is what ``git diff REF...HEAD`` shows (the
changes of this branch, not those made on ``REF`` after it forked) plus uncommitted work: a CI
checkout has none, and a developer expects their edits to be checked.

A notebook is selected when it changed, or when a dependency file (``requirements*.txt``,
``environment.yml``/``.yaml``, ``pyproject.toml``) changed in its folder or any folder above it,
up to the repository's top level. Other files a notebook reads (data, local modules) are not
followed.
"""

from __future__ import annotations

import fnmatch
import posixpath
import subprocess
from pathlib import Path
from typing import List, Sequence, Set

from nbci.errors import ConfigError

DEPENDENCY_FILES = ("requirements*.txt", "environment.yml", "environment.yaml", "pyproject.toml")
FETCH_HINT = "fetch it first (actions/checkout with fetch-depth: 0)"


class GitError(ConfigError):
    """A git command failed; the message is git's last line of error output."""


def git(root: Path, *args: str) -> str:
    """Run git in ``root`` and return its output; ``GitError`` when it fails."""
    try:
        proc = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("--changed-since needs git on PATH: install git or drop the option") from None
    if proc.returncode:
        lines = proc.stderr.strip().splitlines()
        raise GitError(lines[-1] if lines else f"git {args[0]} exited with {proc.returncode}")
    return proc.stdout


def repo_prefix(root: Path) -> str:
    """Where ``root`` is inside its git repository: ``""`` at the top level, else ``"sub/dir/"``."""
    try:
        return git(root, "rev-parse", "--show-prefix").strip()
    except GitError as exc:
        raise ConfigError(f"--changed-since needs a git checkout, and {root} is not one ({exc})") from None


def changed_files(ref: str, root: Path) -> Set[str]:
    """Files changed since ``ref`` (see the module doc), relative to the top level, ``/`` separated."""
    repo_prefix(root)
    try:
        commit = git(root, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}").strip()
    except GitError:
        raise ConfigError(f"--changed-since {ref!r} is not a commit, branch or tag here: {FETCH_HINT}") from None
    try:
        base = git(root, "merge-base", commit, "HEAD").strip()
    except GitError:
        raise ConfigError(f"--changed-since {ref!r} shares no history with HEAD: {FETCH_HINT}") from None
    diff = git(root, "diff", "--name-only", "--no-relative", "--no-renames", "-z", base, "--", ":/")
    untracked = git(root, "ls-files", "--others", "--exclude-standard", "--full-name", "-z", "--", ":/")
    return {name for name in (diff + untracked).split("\0") if name}


def is_dependency_file(path: str) -> bool:
    name = posixpath.basename(path)
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in DEPENDENCY_FILES)


def ancestors(path: str) -> List[str]:
    """The folders above ``path``, nearest first, ending with ``""`` for the top level."""
    folders = []
    while path:
        path = posixpath.dirname(path)
        folders.append(path)
    return folders


def select_changed(paths: Sequence[str], ref: str, root: Path) -> List[str]:
    """The ``paths`` (relative to ``root``) that changed since ``ref``, or whose dependencies did."""
    changed = changed_files(ref, root)
    prefix = repo_prefix(root)
    dependency_dirs = {posixpath.dirname(path) for path in changed if is_dependency_file(path)}
    return [
        path for path in paths
        if prefix + path in changed or any(folder in dependency_dirs for folder in ancestors(prefix + path))
    ]
