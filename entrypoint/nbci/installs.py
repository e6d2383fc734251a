"""Cells that install packages while a notebook runs (``%pip install``, ``!conda install``, ...).

Such a cell changes the kernel's environment in the middle of a run: runs stop being repeatable, and
the execution cache's environment key no longer describes what the notebook ran with. nbci warns
once per notebook and never reuses or keeps a cache entry for it.
"""

from __future__ import annotations

import re
from typing import List

from nbformat import NotebookNode

from nbci.results import cell_label

OPTIONS = r"(?:\s+-{1,2}[\w.=-]+)*"  # -q, --quiet, --upgrade between a tool and its verb
INSTALL = re.compile(
    rf"\b(?:pip[\d.]*|conda|mamba|micromamba|uv(?:\s+pip)?|apt(?:-get)?|brew){OPTIONS}\s+(?:install|add|sync)\b"
    rf"|-m\s+pip{OPTIONS}\s+install\b"  # python -m pip -q install x, {{sys.executable}} -m pip install x
    r"|\bsetup\.py\s+(?:install|develop)\b|\b(?:conda|mamba|micromamba)\s+env\s+(?:update|create)\b"
    r"|['\"](?:pip[\d.]*|conda|mamba|-m['\"]\s*,\s*['\"]pip)['\"]\s*,\s*(?:['\"]-[^'\"]*['\"]\s*,\s*)*['\"]\s*install\b")
DIRECT = re.compile(r"\bpip\.main\s*\(|\b(?:micropip|piplite)\.install\s*\(")  # installers called in Python
SHELL_LINE = re.compile(r"^[ \t]*[%!]")  # !pip ..., %pip ..., %conda ...
SHELL_CELL = re.compile(r"\A\s*%%(?:bash|sh|script|system|!)")  # a cell run by a shell
CALL = re.compile(r"\b(?:system|run|call|check_call|check_output|Popen|getoutput|getstatusoutput|run_line_magic|"
                  r"run_cell_magic|spawn\w*|exec\w*)\s*\(")  # os.system("pip install x"), subprocess.run([...])
COMMENT_LINE = re.compile(r"^[ \t]*#.*$", re.MULTILINE)

SHOWN = 3  # cells named in the warning; the rest are counted


def install_cells(nb: NotebookNode) -> List[str]:
    """The labels of the code cells that install packages, in order."""
    labels, code_cell = [], 0
    for index, cell in enumerate(nb.cells):
        if cell.get("cell_type") != "code":
            continue
        code_cell += 1
        source = cell.get("source", "")
        if isinstance(source, str) and installs(source):
            labels.append(cell_label(index, code_cell))
    return labels


def installs(source: str) -> bool:
    """Whether a cell's source installs packages: a shell cell, a shell or magic line, a call that runs an
    installer (anywhere in the cell: black splits calls over lines), or an installer called in Python."""
    code = COMMENT_LINE.sub("", source)
    if DIRECT.search(code):
        return True
    if not INSTALL.search(code):
        return False
    if SHELL_CELL.match(code) or CALL.search(code):
        return True
    return any(SHELL_LINE.match(line) and INSTALL.search(line) for line in code.splitlines())


def install_warning(labels: List[str]) -> str:
    """One line: where the notebook installs packages, and what to do instead."""
    named = ", ".join(labels[:SHOWN]) + (f" and {len(labels) - SHOWN} more" if len(labels) > SHOWN else "")
    return (f"installs packages while it runs ({named}): runs are not repeatable and the execution cache is "
            "not used for it; declare those packages in the environment file (requirements.txt, "
            "environment.yml, pyproject.toml) instead")
