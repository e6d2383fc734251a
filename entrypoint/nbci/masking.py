"""Secrets: their values masked in everything nbci writes, and notebooks that need absent ones skipped.

A ``Masker`` holds the values of the variables ``--mask-env`` names (at least ``MIN_DECLARED``
characters) and of the variables whose names say they are secrets (``SECRET_NAMES``, at least
``MIN_NAMED`` characters, so short values do not blank ordinary text), each also URL-encoded,
JSON- and HTML-escaped, and base64-encoded in its three alignments (the stable middle, as GitHub's
own masker does). The runner masks an executed copy and its result once, right after the notebook
ran or was taken from the cache, before any writer sees them. Images and other binary outputs
cannot be masked.
"""

from __future__ import annotations

import base64
import dataclasses
import fnmatch
import html
import json
import re
from typing import Any, Iterable, List, Mapping, Optional, Set, Tuple
from urllib.parse import quote, quote_plus

from nbci.errors import ConfigError

MASK = "***"
MIN_DECLARED = 4  # characters: a --mask-env value shorter than this is not masked
MIN_NAMED = 8  # characters: a secret-named variable's value shorter than this is not masked
SECRET_NAMES = ("*_TOKEN", "*_SECRET", "*_SECRET_KEY", "*_PASSWORD", "*_PASSWD", "*_API_KEY", "*_APIKEY",
                "*_ACCESS_KEY", "*_PRIVATE_KEY", "*_CLIENT_SECRET", "*_CREDENTIALS", "*_AUTH")
# what a notebook's output holds as text; everything else (image/png, application/pdf) is binary, base64
TEXT_MIME = re.compile(r"text/.*|application/(.*\+)?json|application/javascript|image/svg\+xml|.*\+xml")
UNMASKED_FIELDS = ("path", "output_path", "status")  # a result's identity, not a notebook's output
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
FORK_NOTE = "not set; secrets are not given to workflows from forks"


def is_secret_name(name: str) -> bool:
    """Whether a variable's name says it holds a secret (``SECRET_NAMES``, any case)."""
    return any(fnmatch.fnmatchcase(name.upper(), pattern) for pattern in SECRET_NAMES)


def encodings(value: str) -> Set[str]:
    """``value`` as a notebook may print it: as is, URL-encoded, JSON-, HTML- and repr-escaped (and
    escaped twice: JSON in a dict's repr), base64."""
    once = {value, quote(value), quote(value, safe=""), quote_plus(value), html.escape(value)}
    once.update(escaped(value))
    found = once | {twice for text in once for twice in escaped(text)}
    found.update(base64_middles(value.encode("utf-8", "surrogatepass")))
    return found


def escaped(text: str) -> Set[str]:
    """``text`` inside a JSON string (ASCII-only or not) and inside a Python string's repr."""
    return {json.dumps(text)[1:-1], json.dumps(text, ensure_ascii=False)[1:-1], repr(text)[1:-1]}


def base64_middles(data: bytes) -> List[str]:
    """The base64 of ``data`` at each of its 3 alignments in a longer text, the characters that depend
    on the bytes around it trimmed."""
    middles = []
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + data).decode("ascii")
        first, end = -(-shift * 8 // 6), (shift + len(data)) * 8 // 6
        middles.append(encoded[first:end])
    return middles


@dataclasses.dataclass(frozen=True)
class Masker:
    """Replaces secret values, in the encodings above, by ``***``; counts what it replaced."""

    pattern: Optional["re.Pattern[str]"] = None  # None: nothing to mask

    @classmethod
    def from_environment(cls, environ: Mapping[str, str], names: Iterable[str] = (),
                         secret_names: bool = True) -> "Masker":
        """The values of ``names`` and, when ``secret_names``, of variables named like secrets."""
        declared = set(names)
        texts: Set[str] = set()
        for name, value in environ.items():
            minimum = MIN_DECLARED if name in declared else MIN_NAMED if secret_names and is_secret_name(name) else None
            if minimum is not None and len(value.strip()) >= minimum:
                texts.update(text for text in encodings(value) if len(text) >= minimum)
        return cls(masking_pattern(texts))

    def mask_text(self, text: str) -> Tuple[str, int]:
        """``text`` with every value masked, and how many were."""
        if self.pattern is None or not text:
            return text, 0
        return self.pattern.subn(MASK, text)

    def mask_notebook(self, nb: Any) -> int:
        """Mask every text (and key) of an executed notebook, or of any JSON-like dict or list, in place;
        binary outputs, such as images, are left as they are. The number of values masked."""
        return self._mask_in(nb) if self.pattern is not None else 0

    def mask_result(self, result: Any) -> int:
        """Mask every text field of a ``NotebookResult`` in place, its path and status excepted."""
        if self.pattern is None:
            return 0
        count = 0
        for item in dataclasses.fields(result):
            if item.name not in UNMASKED_FIELDS:
                value, masked = self._masked(getattr(result, item.name))
                setattr(result, item.name, value)
                count += masked
        return count

    def _mask_in(self, container: Any) -> int:
        """Mask the texts inside a dict or list in place, skipping binary MIME data."""
        count = 0
        items = container.items() if isinstance(container, dict) else enumerate(container)
        for key, value in list(items):
            if isinstance(key, str) and "/" in key and isinstance(value, str) and not TEXT_MIME.fullmatch(key):
                continue  # base64 of an image or other binary data: masking would break it
            value, masked = self._masked(value)
            container[key] = value
            count += masked
        if isinstance(container, dict):
            for key in [key for key in container if isinstance(key, str)]:
                new_key, masked = self.mask_text(key)
                if masked and new_key not in container:
                    container[new_key] = container.pop(key)
                    count += masked
        return count

    def _masked(self, value: Any) -> Tuple[Any, int]:
        """``value`` with its texts masked (a dict or list in place), and how many were."""
        if isinstance(value, str):
            return self.mask_text(value)
        if isinstance(value, (dict, list)):
            return value, self._mask_in(value)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return value, self.mask_result(value)
        return value, 0


def masking_pattern(texts: Set[str]) -> Optional["re.Pattern[str]"]:
    """One regular expression matching any of ``texts``, longest first; None for none."""
    if not texts:
        return None
    return re.compile("|".join(re.escape(text) for text in sorted(texts, key=lambda text: (-len(text), text))))


def check_env_names(names: Iterable[Any], at: str) -> Tuple[str, ...]:
    """Variable names (``--mask-env``, ``requires-env``); ``ConfigError`` naming the first bad one."""
    checked = []
    for name in names:
        if not isinstance(name, str) or not ENV_NAME.fullmatch(name):
            raise ConfigError(f"{at}: {name!r} is not an environment variable name such as EARTHDATA_TOKEN")
        checked.append(name)
    return tuple(checked)


def missing_env_reason(names: Iterable[str], environ: Mapping[str, str]) -> Optional[str]:
    """Why a notebook needing ``names`` is skipped (one is unset or empty), or None when all are set."""
    missing = [name for name in names if not environ.get(name, "").strip()]
    return f"needs {', '.join(missing)} ({FORK_NOTE})" if missing else None
