"""Text notebooks (jupytext): percent scripts (``.py``), MyST Markdown (``.md``), R Markdown, Quarto.

A text file counts as a notebook only when it says so: a jupytext header, ``# %%`` cells in a
script, ``{code-cell}`` blocks in Markdown, code chunks in R Markdown or Quarto. Globs pick up only
such files; a text file named explicitly that is not one is reported ``skipped`` with the reason
(an unquoted glob the shell expanded names every file).
jupytext is an optional dependency (``nbci[text]``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, Iterable, Mapping, Optional

from nbformat import NotebookNode

from nbci.errors import InvalidNotebook, NotANotebook
from nbci.files import UnsafePath, read_notebook_bytes

TEXT_EXTENSIONS = (".py", ".md", ".Rmd", ".qmd")
SNIFF_BYTES = 64 * 1024  # how much of a file a glob match reads to tell a notebook
HEADER = re.compile(r"^(?:# )?(?:jupyter|jupytext):[ \t]*$", re.MULTILINE)
MARKERS = {
    ".py": (re.compile(r"^# %%", re.MULTILINE), "'# %%' cells"),
    ".md": (re.compile(r"^(?:```|~~~)\{code-cell\}", re.MULTILINE), "'{code-cell}' blocks"),
    ".Rmd": (re.compile(r"^```\{[A-Za-z]", re.MULTILINE), "'```{python}' chunks"),
    ".qmd": (re.compile(r"^```\{[A-Za-z]", re.MULTILINE), "'```{python}' chunks"),
}


def is_text_path(path: str) -> bool:
    return path.endswith(TEXT_EXTENSIONS)


def copy_name(path: str, renamed: Optional[Mapping[str, str]] = None) -> str:
    """Where a notebook's executed copy goes, relative to the output folder: text notebooks as
    ``.ipynb`` beside their name (``a/b.py`` -> ``a/b.py.ipynb``), unless ``renamed`` (from
    ``copy_names``) names another."""
    return (renamed or {}).get(path) or (f"{path}.ipynb" if is_text_path(path) else path)


def copy_names(paths: Iterable[str]) -> Dict[str, str]:
    """The copies of the text notebooks among ``paths`` whose usual copy name is another of
    ``paths`` (``a.py`` beside ``a.py.ipynb``): ``a.py.text.ipynb``, or ``a.py.text-2.ipynb``, ... while
    that is taken too. Every notebook in ``paths`` then has a copy of its own."""
    taken = set(paths)
    renamed: Dict[str, str] = {}
    for path in sorted(path for path in taken if is_text_path(path) and copy_name(path) in taken):
        name, number = f"{path}.text.ipynb", 1
        while name in taken:
            number += 1
            name = f"{path}.text-{number}.ipynb"
        renamed[path] = name
        taken.add(name)
    return renamed


def not_a_notebook(text: str, suffix: str) -> str:
    """Why ``text`` is not a text notebook, or "" when it is one."""
    marker, names = MARKERS[suffix]
    if HEADER.search(text) or marker.search(text):
        return ""
    return (f"not a notebook: a {suffix} file with no jupytext header and no {names}; to run only the notebooks "
            f"a glob matches, quote it (nbci run 'docs/*{suffix}'), so nbci expands it, not the shell")


def looks_like_notebook(root: Path, relpath: str) -> bool:
    """Whether a file a glob matched is a text notebook, from its first ``SNIFF_BYTES``. One nbci
    may not read (a link out of the root, a FIFO) counts, so that the run reports it ``invalid``."""
    try:
        head = read_notebook_bytes(root, relpath, SNIFF_BYTES).decode("utf-8", "replace")
    except UnsafePath:
        return True
    return not not_a_notebook(head, Path(relpath).suffix)


def read_text_notebook(text: str, suffix: str) -> NotebookNode:
    """The notebook jupytext reads from ``text``; ``InvalidNotebook`` when it is none, or jupytext is missing."""
    reason = not_a_notebook(text, suffix)
    if reason:
        raise NotANotebook(reason)
    try:
        import jupytext
    except ImportError:
        raise InvalidNotebook("a text notebook needs jupytext: pip install 'nbci[text]' (the action installs "
                              "it when notebooks names .py, .md, .Rmd or .qmd files)") from None
    fmt = suffix[1:]
    if suffix in (".py", ".md") and MARKERS[suffix][0].search(text):  # jupytext reads a header's format,
        fmt += ":percent" if suffix == ".py" else ":myst"               # not one the cells show
    try:
        return jupytext.reads(text, fmt=fmt)
    except Exception as exc:  # jupytext raises many kinds; Quarto needs the quarto program
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InvalidNotebook(f"jupytext cannot read it: {reason}") from None
