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

INSTALLERS = r"(?:pip3?|conda|mamba|micromamba|uv\s+pip|python3?\s+-m\s+pip)"
INSTALL_LINE = re.compile(
    rf"^[ \t]*[%!][ \t]*{INSTALLERS}[ \t]+install\b"  # %pip install x, !uv pip install x
    r"|run_line_magic\(\s*['\"](?:pip|conda|mamba)['\"]\s*,\s*['\"]\s*install\b"  # a converted %pip
    r"|['\"]-m['\"]\s*,\s*['\"]pip['\"]\s*,\s*['\"]install['\"]",  # subprocess.check_call([..., "-m", "pip", "install"])
    re.MULTILINE)
SHOWN = 3  # cells named in the warning; the rest are counted


def install_cells(nb: NotebookNode) -> List[str]:
    """The labels of the code cells that install packages, in order."""
    labels, code_cell = [], 0
    for index, cell in enumerate(nb.cells):
        if cell.get("cell_type") != "code":
            continue
        code_cell += 1
        source = cell.get("source", "")
        if isinstance(source, str) and INSTALL_LINE.search(source):
            labels.append(cell_label(index, code_cell))
    return labels


def install_warning(labels: List[str]) -> str:
    """One line: where the notebook installs packages, and what to do instead."""
    named = ", ".join(labels[:SHOWN]) + (f" and {len(labels) - SHOWN} more" if len(labels) > SHOWN else "")
    return (f"installs packages while it runs ({named}): runs are not repeatable and the execution cache is "
            "not used for it; declare those packages in the environment file (requirements.txt, "
            "environment.yml, pyproject.toml) instead")
