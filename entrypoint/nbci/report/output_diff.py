"""A changed cell on a notebook's page: its changed outputs as diffs, its images side by side.

Runs in a render worker. The diff of each changed output comes from ``OutputDifference`` (masked,
bounded texts): removed lines (committed) and added lines (fresh) are marked by sign and colour,
and within a changed line the characters that differ are marked too (character by character in
short lines, else between the lines' common start and end, so that a long line costs linear time). Images are compared by eye:
the fresh ones come from the executed copy, the committed ones from the source notebook in the
run's root, read like every file of the repository (``files.read_notebook_bytes``: inside the root,
a regular file, bounded). Every image becomes a ``data:`` URI of a known image type, so the page
fetches nothing; the template escapes every text.
"""

from __future__ import annotations

import base64
import difflib
import json
import os
import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from nbci.files import read_notebook_bytes
from nbci.report import change_text, diff_lines
from nbci.results import OutputDifference

IMAGE_TYPES = ("image/png", "image/jpeg", "image/svg+xml")
IMAGES_PER_SIDE = 6  # of one cell
MAX_IMAGE_CHARS = 14 * 2**20  # of one image as base64 (about 10 MiB)
DIFFS_PER_PAGE = 50  # changed outputs shown on one page
DIFF_LINES = 200  # of one changed output's diff
DIFF_CHARS = 2000  # of one diff line
FINE_CHARS = 100  # a changed line this long or shorter gets its characters diffed (cubic at worst)
FINE_PAIRS = 10  # of one changed output; longer lines and later pairs get their common start and end kept
BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")
ROW_KINDS = {"@": "hunk", "-": "del", "+": "add", " ": "same"}


def page_changes(differences: Sequence[OutputDifference], fresh_cells: List[Any], root: str,
                 source: str) -> Dict[int, Dict[str, Any]]:
    """What the template shows below each changed cell, by the cell's index in the executed copy."""
    committed = committed_cells(root, source)
    marks: Dict[int, Dict[str, Any]] = {}
    for difference in differences[:DIFFS_PER_PAGE]:
        if difference.cell_index not in marks:
            cell = fresh_cells[difference.cell_index] if 0 <= difference.cell_index < len(fresh_cells) else {}
            before = committed_cell(committed, cell, difference.cell_index)
            marks[difference.cell_index] = {
                "first": not marks, "title": difference.cell, "diffs": [],
                "committed": cell_images(before), "fresh": cell_images(cell),
                "committed_known": before is not None,
            }
        marks[difference.cell_index]["diffs"].append({"title": change_text(difference), "rows": diff_rows(difference)})
    for mark in marks.values():
        mark["images"] = bool(mark["committed"] or mark["fresh"])
    return marks


def diff_rows(difference: OutputDifference) -> List[Dict[str, Any]]:
    """The diff's lines as ``{"kind", "sign", "parts": [(text, differs)]}``; where removed lines are
    followed by added ones, the characters that differ between the n-th of each are marked."""
    lines = diff_lines(difference, DIFF_LINES, DIFF_CHARS)
    rows = [{"kind": ROW_KINDS.get(line[:1], "cut"), "sign": line[:1] if line[:1] in "-+ " else "",
             "parts": [(line[1:] if line[:1] in "-+ " else line, False)]} for line in lines]
    kinds = "".join(row["kind"][0] for row in rows)  # d(el), a(dd), h(unk), s(ame), c(ut)
    fine = FINE_PAIRS
    for change in re.finditer("(d+)(a+)", kinds):  # removed lines then added ones: the n-th against the n-th
        removed, added = rows[change.start(1):change.end(1)], rows[change.start(2):change.end(2)]
        for before, after in zip(removed, added):
            old, new = before["parts"][0][0], after["parts"][0][0]
            if fine > 0 and max(len(old), len(new)) <= FINE_CHARS:
                fine -= 1
                before["parts"], after["parts"] = marked_parts(old, new)
            else:
                before["parts"], after["parts"] = marked_ends(old, new)
    return rows


def marked_ends(old: str, new: str) -> tuple:
    """``old`` and ``new`` split into their common start, the differing middle (marked) and their common
    end; linear in their length."""
    start = len(os.path.commonprefix([old, new]))
    end = len(os.path.commonprefix([old[start:][::-1], new[start:][::-1]]))
    return runs(old, start, len(old) - end), runs(new, start, len(new) - end)


def runs(text: str, start: int, end: int) -> List[tuple]:
    """``text`` as ``(text, differs)`` runs: ``[start:end]`` marked, the rest not; no empty run."""
    parts = [(text[:start], False), (text[start:end], True), (text[end:], False)]
    return [part for part in parts if part[0]]


def marked_parts(old: str, new: str) -> tuple:
    """``old`` and ``new`` split into ``(text, differs)`` runs, the differing characters marked."""
    matcher = difflib.SequenceMatcher(None, old, new, autojunk=False)
    if matcher.ratio() < 0.5:  # mostly different: marking it all would only add noise
        return [(old, False)], [(new, False)]
    removed: List[tuple] = []
    added: List[tuple] = []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if old[i1:i2]:
            removed.append((old[i1:i2], tag != "equal"))
        if new[j1:j2]:
            added.append((new[j1:j2], tag != "equal"))
    return removed, added


def committed_cells(root: str, source: str) -> Optional[List[Any]]:
    """The cells of the source notebook ``source`` (relative to ``root``) as committed, or None when it
    cannot be read as notebook JSON (a text notebook, a link out of the root, a FIFO)."""
    try:
        cells = json.loads(read_notebook_bytes(Path(root), source)).get("cells")
    except (OSError, ValueError, AttributeError, RecursionError):
        return None
    return cells if isinstance(cells, list) else None


def committed_cell(committed: Optional[List[Any]], fresh: Any, index: int) -> Optional[Dict[str, Any]]:
    """The committed cell the fresh one was run from: the one with its id, else the one at ``index``."""
    if committed is None:
        return None
    cell_id = fresh.get("id") if isinstance(fresh, dict) else None
    same_id = [cell for cell in committed if isinstance(cell, dict) and cell_id and cell.get("id") == cell_id]
    cell = same_id[0] if same_id else committed[index] if 0 <= index < len(committed) else None
    return cell if isinstance(cell, dict) else None


def cell_images(cell: Any) -> List[str]:
    """The images of ``cell``'s outputs as ``data:`` URIs, at most ``IMAGES_PER_SIDE``."""
    outputs = cell.get("outputs") if isinstance(cell, dict) else None
    images: List[str] = []
    for output in outputs if isinstance(outputs, list) else []:
        data = output.get("data") if isinstance(output, dict) else None
        for mime in IMAGE_TYPES:
            uri = data_uri(mime, data.get(mime)) if isinstance(data, dict) and mime in data else None
            if uri and len(images) < IMAGES_PER_SIDE:
                images.append(uri)
    return images


def data_uri(mime: str, value: Any) -> Optional[str]:
    """An output's image as a ``data:`` URI, or None when it is not one (not text, not base64, too large)."""
    text = "".join(value) if isinstance(value, list) and all(isinstance(v, str) for v in value) else value
    if not isinstance(text, str) or len(text) > MAX_IMAGE_CHARS:
        return None
    if mime == "image/svg+xml":
        return f"data:{mime};base64,{base64.b64encode(text.encode('utf-8', 'replace')).decode('ascii')}"
    packed = "".join(text.split())
    return f"data:{mime};base64,{packed}" if packed and BASE64.fullmatch(packed) else None
