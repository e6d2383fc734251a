"""One notebook's page, rendered in a render worker: nbconvert's HTML exporter with nbci's template.

What the notebook holds is untrusted, so on top of nbconvert:

- HTML from Markdown cells, raw cells and outputs is sanitized to an allowlist of formatting
  tags; an image keeps its ``src`` only as embedded ``data:image/...``, so a page fetches nothing.
- A Markdown image with a relative address (``![x](img.png)``, ``<img src="../x.png">``) is
  embedded from the notebook's folder when the file's real path is inside the run's root: a
  regular image file of at most ``MAX_IMAGE_BYTES``, read without following a link out of the
  root or waiting on a FIFO. Anything else (absolute paths, ``..`` out of the root, URLs) is not.
- An output's metadata keeps image sizes only as numbers (the template writes them unquoted) and
  loses ``filenames`` (the template would make them a ``src``).
"""

from __future__ import annotations

import base64
import math
import mimetypes
import posixpath
import urllib.parse
from pathlib import Path
from typing import Any, Dict, Optional

import bleach
from jinja2 import pass_context
from nbconvert import HTMLExporter
from nbconvert.filters.markdown_mistune import IPythonRenderer, MarkdownWithMath

from nbci.files import read_notebook_bytes

MAX_IMAGE_BYTES = 10 * 2**20
FAILURE_ANCHOR = "failure"  # the id of nbci's marker above the failing cell; no notebook may take it
CHANGED_ANCHOR = "changed"  # the id of nbci's marker above the first changed cell; nor this one
SIZES = ("width", "height")
TAGS = frozenset({
    "a", "abbr", "b", "blockquote", "br", "caption", "code", "col", "colgroup", "dd", "del", "details", "div", "dl",
    "dt", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "ins", "kbd", "li", "mark", "ol", "p", "pre",
    "q", "s", "samp", "small", "span", "strong", "sub", "summary", "sup", "table", "tbody", "td", "tfoot", "th",
    "thead", "tr", "u", "ul", "var",
})
ATTRIBUTES = frozenset({"class", "id", "title", "alt", "align", "colspan", "rowspan", "start", "open", "href", "src",
                        "width", "height"})


def allowed_attribute(tag: str, name: str, value: str) -> bool:
    """Whether sanitized HTML keeps ``name="value"`` on ``tag``."""
    if name == "src":
        return tag == "img" and value.startswith("data:image/")
    if name == "href":
        return tag == "a" and not value.strip().lower().startswith("data:")
    if name in SIZES:
        return value.isdigit()
    if name == "id":
        return value not in (FAILURE_ANCHOR, CHANGED_ANCHOR)
    return name in ATTRIBUTES


def clean_html(html: Any) -> str:
    """Notebook HTML reduced to formatting: allowed tags and attributes, the rest shown as text."""
    text = html.decode() if isinstance(html, bytes) else str(html)
    return bleach.clean(text, tags=TAGS, attributes=allowed_attribute, protocols={"http", "https", "mailto", "data"})


def embedded_image(root: str, folder: str, src: str) -> Optional[str]:
    """``src`` as a ``data:`` URI when it names an image file inside ``root``, relative to ``folder``
    (the notebook's folder, relative to ``root``); else None."""
    mime, _ = mimetypes.guess_type(src)
    if not mime or not mime.startswith("image/") or urllib.parse.urlsplit(src).scheme or posixpath.isabs(src):
        return None
    try:
        data = read_notebook_bytes(Path(root), posixpath.join(folder, src), MAX_IMAGE_BYTES + 1)
    except OSError:  # outside the root, a link out of it, missing, not a regular file
        return None
    if len(data) > MAX_IMAGE_BYTES:
        return None
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


class PageRenderer(IPythonRenderer):
    """nbconvert's Markdown renderer, embedding only images inside the run's root."""

    def __init__(self, root: str, folder: str, **options: Any) -> None:
        super().__init__(**options)
        self.root, self.folder = root, folder

    def _src_to_base64(self, src: str) -> Optional[str]:
        return embedded_image(self.root, self.folder, src)

    def _embed_image_or_attachment(self, src: str) -> str:
        """An attachment the cell lacks stays its address (nbconvert stops the page)."""
        name = src[len("attachment:"):] if src.startswith("attachment:") else None
        if name is not None and name not in self.attachments:
            return src
        return super()._embed_image_or_attachment(src)


class PageExporter(HTMLExporter):
    """The HTML exporter with nbci's sanitizer and Markdown renderer; ``resources["nbci"]`` names
    the run's ``root`` and the notebook's ``folder`` in it."""

    def default_filters(self):
        yield from super().default_filters()
        yield ("clean_html", clean_html)

    @pass_context
    def markdown2html(self, context: Any, source: str) -> str:
        place = context.get("resources", {}).get("nbci", {})
        renderer = PageRenderer(place.get("root", ""), place.get("folder", ""), escape=False,
                                attachments=context.get("cell", {}).get("attachments", {}), embed_images=True,
                                anchor_link_text=self.anchor_link_text,
                                exclude_anchor_links=self.exclude_anchor_links, **self.lexer_options)
        return MarkdownWithMath(renderer=renderer).render(source)


def page_metadata(metadata: Any) -> Dict[str, Any]:
    """An output's metadata as the template may read it: no ``filenames``, sizes only as numbers,
    per-type entries (``image/png``) only as mappings."""
    if not isinstance(metadata, dict):
        return {}
    kept: Dict[str, Any] = {}
    for key, value in metadata.items():
        if key == "filenames" or (key in SIZES and not is_size(value)):
            continue
        if "/" in key:
            if not isinstance(value, dict):
                continue
            value = page_metadata(value)
        kept[key] = value
    return kept


def is_size(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0
