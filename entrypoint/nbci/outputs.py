"""Output regression checking (``--check-outputs``): a notebook's fresh outputs against its committed ones.

The rules are nbval's, so its users get the verdicts they know: a code cell the committed notebook
never ran (no execution count, no outputs) is not compared; streams are compared per name with
consecutive stream outputs coalesced and ``\\r``/``\\b`` applied; rich outputs per MIME type, a
differing set of MIME types differs; errors by ``ename`` and ``evalue``, never the traceback;
metadata, execution counts and widget ids never. nbval's markers apply with its precedence (a
comment in the source wins over a tag). Images are compared only with an ``image_tolerance``,
decoded to pixels. Masks (``DEFAULT_MASKS``, then the user's) are applied to both sides first.

The masks of a settings file or an nbval sanitize file are the repository's regular expressions,
which a pull request can make backtrack for hours: work that uses them runs in a child process
(``bounded``, then ``isolated``: ``nbci.child``) killed after ``MASK_SECONDS``.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import os
import re
import stat
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from nbci import child
from nbci.errors import ConfigError
from nbci.files import NOFOLLOW, NONBLOCK, inside
from nbci.notebook_json import Span, cell_spans, json_like, spliced
from nbci.results import OutputCheck, OutputDifference, cell_label
from nbci.text import clip, escape_surrogates

MODES = ("off", "warn", "fail")
SCOPES = ("all", "marked")  # marked: only cells marked check-output (nbval's --nbval-lax)
MASK_SECONDS = 20.0  # how long the repository's masks may take over one notebook's outputs
DIFF_CHARS = 4_000  # characters of each side's text kept per difference
MAX_DIFFERENCES = 100  # differences listed per notebook; the note counts the rest
BACKSPACE = re.compile(r"[^\n]\x08")
BACKSPACE_PASSES = 64  # nbval repeats until nothing changes; a text made to need more passes stops here
NOTHING_TO_COMPARE = "nothing to compare: the notebook has no committed outputs"
RASTER_IMAGES = ("image/png", "image/jpeg")
IMAGES = RASTER_IMAGES + ("image/svg+xml",)
NEVER_COMPARED = ("application/vnd.jupyter.widget-view+json",)  # model ids are random

# nbval's markers: (option, value) by comment; a tag is the comment in lower case with dashes
COMMENT_MARKERS = {
    "PYTEST_VALIDATE_IGNORE_OUTPUT": ("check", False),
    "NBVAL_IGNORE_OUTPUT": ("check", False),
    "NBVAL_CHECK_OUTPUT": ("check", True),
    "NBVAL_RAISES_EXCEPTION": ("raises", True),
    "NBVAL_SKIP": ("skip", True),
}
TAG_MARKERS = {name.lower().replace("_", "-"): marker for name, marker in COMMENT_MARKERS.items()}
NBVAL_TAGS = frozenset(TAG_MARKERS)


@dataclass(frozen=True)
class Mask:
    """A regular expression and its replacement, applied to both sides' text before comparing."""

    pattern: str
    replace: str
    name: str = ""


DEFAULT_MASKS = (
    Mask(r"\x1b\[[0-9;?]*[ -/]*[@-~]", "", "ANSI escape codes"),
    Mask(r"\r\n", "\n", "Windows line ends"),
    Mask(r"(?m)^[^\n]*\r(?=[^\n])", "", "lines overwritten with a carriage return (progress bars)"),
    Mask(r"\[\d+(?::\d+)+<(?:\d+(?::\d+)+|\?)(?:, *[^\]\n]*)?\]", "[PROGRESS]", "tqdm's elapsed time and rate"),
    Mask(r"(?m)^(CPU times|Wall time):[^\n]*", r"\1: TIME", "%time lines"),
    Mask(r"\bat 0x[0-9a-fA-F]{4,16}\b", "at 0xADDRESS", "memory addresses"),
    Mask(r"<Figure size \d+(?:\.\d+)?x\d+(?:\.\d+)? with (\d+) Axes>", r"<Figure size WxH with \1 Axes>",
         "matplotlib figure sizes"),
    Mask(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b", "UUID", "UUIDs"),
    Mask(r"\bdatetime\.(datetime|date|time)\([0-9, ]*(?:, *(?:fold=\d|tzinfo=(?:<[^<>\n]*>|[\w.]+"
         r"(?:\((?:[^()\n]|\([^()\n]*\))*\))?)))*\)", r"datetime.\1(...)", "datetime reprs, time zones too"),
    Mask(r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?\b", "DATETIME",
         "ISO date-times"),
    Mask(r"\b\d{4}-\d{2}-\d{2}\b", "DATE", "ISO dates"),
    Mask(r"\b\d{2}:\d{2}:\d{2}(?:\.\d+)?\b", "TIME", "ISO times"),
    Mask(r"(?m)(?<![ \t])[ \t]+$", "", "trailing whitespace"),  # tried once per run of blanks: linear
)


@dataclass(frozen=True)
class CheckOptions:
    """How one notebook's outputs are checked."""

    mode: str = "off"
    scope: str = "all"
    masks: Tuple[Mask, ...] = ()  # the user's, applied after the default ones
    default_masks: bool = True
    image_tolerance: Optional[float] = None  # None: images are not compared

    @property
    def all_masks(self) -> Tuple[Mask, ...]:
        return (DEFAULT_MASKS if self.default_masks else ()) + self.masks

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> "CheckOptions":
        return cls(**{**data, "masks": tuple(Mask(**mask) for mask in data["masks"])})


class MasksTooSlow(Exception):
    """The repository's masks took longer than ``MASK_SECONDS`` over a notebook's outputs."""


class MasksFailed(Exception):
    """The repository's masks could not be applied to a notebook's outputs (out of memory, say)."""


def isolated(function: str, committed: Any, executed: Any, options: CheckOptions, *more: Any) -> Any:
    """``check_outputs`` or ``updated_source`` in a child process (no runner files, killed after
    ``MASK_SECONDS``; JSON in and out); ``MasksTooSlow`` when it was."""
    try:
        answer = child.call("nbci.outputs:child_call", [function, committed, executed, asdict(options), *more],
                            MASK_SECONDS)
    except child.ChildTimeout:
        raise MasksTooSlow(f"the output masks took over {MASK_SECONDS:g} s on this notebook's outputs: "
                           "simplify the regular expressions of the settings file's output-masks "
                           "and of the --nbval-sanitize-with file") from None
    except child.ChildFailed as exc:
        raise MasksFailed(f"the output masks failed on this notebook's outputs ({exc}): check the regular "
                          "expressions and replacements of the settings file's output-masks and of the "
                          "--nbval-sanitize-with file") from None
    return OutputCheck.from_json(answer) if function == "check_outputs" else answer


def child_call(function: str, committed: Any, executed: Any, options: Dict[str, Any], *more: Any) -> Any:
    """The child's side of ``isolated``: ``function`` on the JSON arguments, its answer as JSON."""
    answer = implementation(function)(committed, executed, CheckOptions.from_json(options), *more)
    return asdict(answer) if isinstance(answer, OutputCheck) else answer


@dataclass(frozen=True)
class Markers:
    """nbval's markers on one code cell; ``check`` None when the cell leaves it to the scope."""

    check: Optional[bool] = None
    raises: bool = False
    skip: bool = False


def cell_markers(cell: Dict[str, Any]) -> Markers:
    """The cell's nbval markers: its tags, then its comment lines over them (nbval's precedence)."""
    found: Dict[str, bool] = {}
    for tag in tags_of(cell):
        if tag in TAG_MARKERS:
            option, value = TAG_MARKERS[tag]
            found[option] = value
    for line in str(cell.get("source", "")).splitlines():
        line = line.strip()
        if line.startswith("#") and line.lstrip("#").strip() in COMMENT_MARKERS:
            option, value = COMMENT_MARKERS[line.lstrip("#").strip()]
            found[option] = value
    return Markers(**found)


def tags_of(cell: Dict[str, Any]) -> List[str]:
    """The cell's tags that are text (a notebook's metadata may hold anything)."""
    tags = cell.get("metadata", {}).get("tags")
    return [tag for tag in tags if isinstance(tag, str)] if isinstance(tags, list) else []


def compiled(masks: Sequence[Mask]) -> List[Tuple["re.Pattern[str]", str]]:
    return [(re.compile(mask.pattern), mask.replace) for mask in masks]


def check_mask(pattern: Any, replace: Any, at: str) -> Mask:
    """A user's mask, its regular expression compiled once to find mistakes; ``ConfigError`` naming ``at``."""
    if not isinstance(pattern, str) or not pattern or not isinstance(replace, str):
        raise ConfigError(f"{at}: a mask is a regex and its replacement text, e.g. {{regex: 'id=\\d+', replace: 'id=N'}}")
    try:
        re.compile(pattern).sub(replace, "")
    except (re.error, OverflowError, RecursionError, IndexError) as exc:
        raise ConfigError(f"{at}: {pattern!r} is not a valid regular expression with its replacement ({exc})") from None
    return Mask(pattern, replace)


def read_sanitize_file(path: Path) -> Tuple[Mask, ...]:
    """The masks of an nbval sanitize file (``[section]`` lines, then ``regex:``/``replace:`` pairs)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--nbval-sanitize-with {path}: cannot read it ({getattr(exc, 'strerror', None) or exc})") from None
    pairs = re.findall(r"^regex: (.*)$\n^replace: (.*)$", text, flags=re.MULTILINE)  # nbval's own reading
    return tuple(check_mask(pattern, replace, f"--nbval-sanitize-with {path}") for pattern, replace in pairs)


def bounded(function: str, committed: Any, executed: Any, options: CheckOptions, *more: Any) -> Any:
    """``function`` here when ``options`` hold only nbci's own masks, else in a child process (``isolated``):
    the repository's masks, from a settings file or a sanitize file alike, never run unbounded here."""
    if not options.masks:
        return implementation(function)(committed, executed, options, *more)
    return isolated(function, committed, executed, options, *more)


def implementation(function: str) -> Callable[..., Any]:
    """The unbounded work behind ``check_outputs`` or ``updated_source``, by name."""
    return {"check_outputs": compare_outputs, "updated_source": source_with_outputs}[function]


def check_outputs(committed: Sequence[Dict[str, Any]], executed: Sequence[Dict[str, Any]],
                  options: CheckOptions) -> OutputCheck:
    """``compare_outputs``, bounded in time when the repository gave masks (``MasksTooSlow``)."""
    return bounded("check_outputs", committed, executed, options)


def compare_outputs(committed: Sequence[Dict[str, Any]], executed: Sequence[Dict[str, Any]],
                    options: CheckOptions) -> OutputCheck:
    """Compare each code cell of ``executed`` with the same cell of ``committed`` (index for index)."""
    check = OutputCheck(options.mode)
    if not any(cell.get("outputs") for cell in committed if cell.get("cell_type") == "code"):
        check.note = NOTHING_TO_COMPARE
        return check
    masks = compiled(options.all_masks)
    code_cell = 0
    for index, (before, after) in enumerate(zip(committed, executed)):
        if before.get("cell_type") != "code":
            continue
        code_cell += 1
        if not compared(before, after, options.scope):
            continue
        check.compared += 1
        name = cell_label(index, code_cell)
        for output, kind, expected, actual in cell_differences(before, after, masks, options.image_tolerance):
            check.differences.append(OutputDifference(index, name, output, kind, clip_words(expected, DIFF_CHARS),
                                                      clip_words(actual, DIFF_CHARS)))
    if len(check.differences) > MAX_DIFFERENCES:
        check.note = f"{len(check.differences) - MAX_DIFFERENCES} more differing outputs not listed"
        del check.differences[MAX_DIFFERENCES:]
    return check


def clip_words(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters after a whitespace, never inside a word: secrets are
    masked in the result after this cut, and a masked value's first half would not be."""
    if len(text) <= limit or text[limit].isspace():
        return clip(text, limit)
    return clip(text, max((text.rfind(space, 0, limit) for space in " \t\n\r\f\v"), default=-1) + 1)


def compared(before: Dict[str, Any], after: Dict[str, Any], scope: str) -> bool:
    """Whether a code cell is compared: marked or in scope, run now, and run in the committed notebook."""
    markers = cell_markers(before)
    if markers.skip or "skip-execution" in tags_of(before):
        return False
    if not (scope == "all" if markers.check is None else markers.check):
        return False
    never_run = before.get("execution_count") is None and not before.get("outputs")
    return not never_run and after.get("execution_count") is not None


def cell_differences(before: Dict[str, Any], after: Dict[str, Any], masks: List[Tuple["re.Pattern[str]", str]],
                     tolerance: Optional[float], images: bool = False) -> List[Tuple[str, str, str, str]]:
    """``(output, kind, expected, actual)`` for each output key whose values differ; images only with a
    ``tolerance`` or ``images`` (then, without a tolerance, byte for byte)."""
    images = images or tolerance is not None
    expected, actual = channels(before.get("outputs") or [], images), channels(after.get("outputs") or [], images)
    found = []
    for key in list(expected) + [key for key in actual if key not in expected]:
        if key not in actual:
            found.append((key, "missing", shown(key, expected[key], masks), ""))
        elif key not in expected:
            found.append((key, "extra", "", shown(key, actual[key], masks)))
        elif not same(key, expected[key], actual[key], masks, tolerance):
            fresh = image_changes(expected[key], actual[key], tolerance) if key in RASTER_IMAGES and tolerance is not None \
                else shown(key, actual[key], masks)
            found.append((key, "changed", shown(key, expected[key], masks), fresh))
    return found


def image_changes(expected: List[str], actual: List[str], tolerance: float) -> str:
    """The fresh images described, each with how far it is from the committed one."""
    if len(expected) != len(actual):
        return "\n".join(describe_image(value) for value in actual)
    return "\n".join(f"{describe_image(after)}: RMS difference {image_difference(before, after):.1f} "
                     f"(tolerance {tolerance:g})" for before, after in zip(expected, actual))


def channels(outputs: Sequence[Dict[str, Any]], images: bool) -> Dict[str, List[str]]:
    """Each compared output key (a stream name, a MIME type, ``error``) and its values, in order."""
    found: Dict[str, List[str]] = {}
    for output in coalesce_streams(outputs):
        kind = output.get("output_type")
        if kind == "stream":
            found.setdefault(str(output.get("name", "stdout")), []).append(output.get("text", ""))
        elif kind == "error":
            found.setdefault("error", []).append(f"{output.get('ename', '')}: {output.get('evalue', '')}")
        elif kind in ("display_data", "execute_result"):
            data = output.get("data") or {}
            for mime, value in data.items() if isinstance(data, dict) else ():
                if mime in NEVER_COMPARED or (mime in IMAGES and not images):
                    continue
                found.setdefault(mime, []).append(as_text(value))
    return found


def coalesce_streams(outputs: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """nbval's coalescing: each stream name's outputs joined into its first, ``\\b`` and lone ``\\r`` applied."""
    merged: List[Dict[str, Any]] = []
    streams: Dict[str, Dict[str, Any]] = {}
    for output in outputs:
        if not isinstance(output, dict):
            continue
        if output.get("output_type") != "stream":
            merged.append(output)
        elif output.get("name") in streams:
            streams[output.get("name")]["text"] += as_text(output.get("text", ""))
        else:
            streams[output.get("name")] = {**output, "text": as_text(output.get("text", ""))}
            merged.append(streams[output.get("name")])
    for stream in streams.values():
        stream["text"] = overwrite(stream["text"])
    return merged


def overwrite(text: str) -> str:
    """``text`` as a terminal shows it: a character before ``\\b`` erased, a line before a lone ``\\r`` dropped."""
    for _ in range(BACKSPACE_PASSES if "\x08" in text else 0):  # nbval's removal of "[^\n]\b" until none is left
        shorter = BACKSPACE.sub("", text)
        if len(shorter) == len(text):
            break
        text = shorter
    return re.sub(r"(?m)^[^\n]*\r(?=[^\n])", "", text) if "\r" in text else text


def as_text(value: Any) -> str:
    """A MIME value as text: a list of lines joined, JSON as sorted indented JSON."""
    if isinstance(value, list) and all(isinstance(line, str) for line in value):
        return "".join(value)
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, sort_keys=True, indent=1, ensure_ascii=False, default=str)
    except (RecursionError, ValueError):  # nested past the stack: the C encoder, on one line
        return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def masked(text: str, masks: List[Tuple["re.Pattern[str]", str]]) -> str:
    for pattern, replace in masks:
        text = pattern.sub(replace, text)
    return text


def shown(key: str, values: List[str], masks: List[Tuple["re.Pattern[str]", str]]) -> str:
    """The values of one output key as a difference shows them: masked text, or a note for an image."""
    if key in RASTER_IMAGES:
        return "\n".join(describe_image(value) for value in values)
    return "\n".join(masked(value, masks) for value in values)


def same(key: str, expected: List[str], actual: List[str], masks: List[Tuple["re.Pattern[str]", str]],
         tolerance: Optional[float]) -> bool:
    if len(expected) != len(actual):
        return False
    if key in RASTER_IMAGES and tolerance is not None:
        return all(image_difference(a, b) <= tolerance for a, b in zip(expected, actual))
    return all(a == b or masked(a, masks) == masked(b, masks) for a, b in zip(expected, actual))


def decoded(value: str) -> Any:
    """A base64 raster image as RGBA pixels (Pillow), or None when it cannot be decoded."""
    from PIL import Image

    try:
        image = Image.open(io.BytesIO(base64.b64decode(value)))
        return image.convert("RGBA")
    except (OSError, ValueError, binascii.Error, Image.DecompressionBombError, SyntaxError):
        return None


def image_difference(expected: str, actual: str) -> float:
    """The root-mean-square difference of the RGBA channel values (0-255); infinite when the sizes
    differ or either side is not an image."""
    from PIL import ImageChops, ImageStat

    before, after = decoded(expected), decoded(actual)
    if before is None or after is None:
        return 0.0 if expected == actual else float("inf")
    if before.size != after.size:
        return float("inf")
    channels_rms = ImageStat.Stat(ImageChops.difference(before, after)).rms
    return (sum(value * value for value in channels_rms) / len(channels_rms)) ** 0.5


def describe_image(value: str) -> str:
    image = decoded(value)
    return "[not a readable image]" if image is None else f"[image {image.size[0]}x{image.size[1]}]"


def pillow_available() -> bool:
    try:
        import PIL.Image  # noqa: F401
    except ImportError:
        return False
    return True


def committed_cells(cells: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """What comparing needs of each cell, copied before execution clears it."""
    return [{"cell_type": cell.get("cell_type"), "source": cell.get("source", ""),
             "metadata": {"tags": tags_of(cell)},
             "execution_count": cell.get("execution_count"),
             "outputs": json.loads(json.dumps(cell.get("outputs") or [], default=str))} for cell in cells]


def updated_source(text: str, executed: Sequence[Dict[str, Any]], options: CheckOptions,
                   injected_at: Optional[int] = None) -> Optional[str]:
    """``source_with_outputs``, bounded in time when the repository gave masks (``MasksTooSlow``)."""
    return bounded("updated_source", text, executed, options, injected_at)


def source_with_outputs(text: str, executed: Sequence[Dict[str, Any]], options: CheckOptions,
                        injected_at: Optional[int] = None) -> Optional[str]:
    """The ``.ipynb`` file ``text`` with each code cell that ran now and whose outputs differ (masked,
    images byte for byte unless ``options`` give a tolerance) given its fresh outputs and count; only
    those values' text is rewritten, the rest kept byte for byte (whole in the file's layout when they
    cannot be found in it); None when no cell changed, or the file's cells do not line up with the
    executed ones."""
    source = json.loads(text)
    cells = source.get("cells") if isinstance(source, dict) else None
    fresh = [cell for index, cell in enumerate(executed) if index != injected_at]
    if not isinstance(cells, list) or len(cells) != len(fresh):
        return None
    masks, style = compiled(options.all_masks), output_style(cells)
    changed = [index for index, (cell, after) in enumerate(zip(cells, fresh))
               if refreshed(cell, after, masks, options.image_tolerance, style)]
    if not changed:
        return None
    values = new_values(cells, cell_spans(text), changed)
    return json_like(source, text) if values is None else spliced(text, values)


def refreshed(cell: Any, after: Dict[str, Any], masks: List[Tuple["re.Pattern[str]", str]],
              tolerance: Optional[float], style: "OutputStyle") -> bool:
    """Whether the file's ``cell`` is a code cell that ran now and whose outputs differ from ``after``'s
    (or that had none); if so it is given ``after``'s outputs (in ``style``) and count."""
    if not isinstance(cell, dict) or cell.get("cell_type") != "code" or after.get("execution_count") is None:
        return False
    never_run = cell.get("execution_count") is None and not cell.get("outputs")
    if not (never_run or cell_differences(cell, after, masks, tolerance, images=True)):
        return False
    cell["outputs"], cell["execution_count"] = file_outputs(after.get("outputs") or [], style), after["execution_count"]
    return True


def new_values(cells: List[Any], spans: Optional[List[Dict[str, Span]]],
               indexes: List[int]) -> Optional[Dict[Span, Any]]:
    """The new outputs and count of each cell at ``indexes``, by their spans in the file's text; None
    when the spans do not line up with the cells or one is missing."""
    if spans is None or len(spans) != len(cells):
        return None
    keys = ("outputs", "execution_count")
    if not all(key in spans[index] for index in indexes for key in keys):
        return None
    return {spans[index][key]: cells[index][key] for index in indexes for key in keys}


@dataclass(frozen=True)
class OutputStyle:
    """How a notebook file writes its outputs: each output type's key order, texts as lists of lines or
    as one string."""

    key_orders: Mapping[str, Tuple[str, ...]]
    lines: bool = True


def output_style(cells: Sequence[Any]) -> OutputStyle:
    """The style of the file's outputs: the first of each type gives its key order; the first text
    (a stream's, a ``text/*`` value) says lists or strings, else the sources do (nbformat's: lists)."""
    orders: Dict[str, Tuple[str, ...]] = {}
    texts: List[Any] = []
    for cell in cells:
        outputs = cell.get("outputs") if isinstance(cell, dict) else None
        for output in outputs if isinstance(outputs, list) else []:
            if isinstance(output, dict):
                orders.setdefault(str(output.get("output_type")), tuple(output))
                data = output.get("data") if isinstance(output.get("data"), dict) else {}
                texts += [output.get("text")] + [value for key, value in data.items() if key.startswith("text/")]
    texts += [cell.get("source") for cell in cells if isinstance(cell, dict)]
    first = next((text for text in texts if isinstance(text, (str, list))), [])
    return OutputStyle(orders, isinstance(first, list))


def file_outputs(outputs: Sequence[Dict[str, Any]], style: OutputStyle = OutputStyle({})) -> List[Dict[str, Any]]:
    """Outputs as the file writes them (``style``): keys in its order, else sorted; texts as lists of
    lines (nbformat's way) or as strings."""
    from nbformat.v4.rwbase import _split_mimebundle

    written = []
    for output in json.loads(json.dumps(list(outputs), sort_keys=True, default=str)):
        if isinstance(output, dict) and isinstance(output.get("data"), dict):
            data = {key: as_text(value) if isinstance(value, list) else value for key, value in output["data"].items()}
            output["data"] = dict(_split_mimebundle(data)) if style.lines else data
        elif isinstance(output, dict) and output.get("output_type") == "stream":
            text = as_text(output.get("text", ""))
            output["text"] = text.splitlines(True) if style.lines else text
        written.append(in_order(output, style.key_orders.get(str(output.get("output_type")), ()))
                       if isinstance(output, dict) else output)
    return written


def in_order(output: Dict[str, Any], order: Sequence[str]) -> Dict[str, Any]:
    """``output`` with the keys ``order`` names first, in that order, then the others as they were."""
    return {**{key: output[key] for key in order if key in output}, **output}


class SourceNotWritten(OSError):
    """``write_source`` left the notebook as it was; the message says why and what to do."""


def write_source(root: Path, relpath: str, was: str, text: str) -> None:
    """``text`` written over ``root/relpath`` when that is still the regular file inside ``root`` that held
    ``was`` (no link on its name, its folder's real path inside ``root``), through a temporary file in its
    folder renamed over it, keeping its mode; else ``SourceNotWritten`` and nothing written."""
    folder = Path(os.path.realpath(root / relpath)).parent if not (root / relpath).is_symlink() else None
    if folder is None or not inside(folder, Path(os.path.realpath(root))):
        raise SourceNotWritten("it is a link or leads outside the working directory; outputs not updated")
    directory = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | NOFOLLOW)
    try:
        name = Path(relpath).name
        info = read_back(directory, name, was, NOFOLLOW | NONBLOCK)
        replace_in(directory, name, escape_surrogates(text).encode("utf-8"), info)
    finally:
        os.close(directory)


def read_back(directory: int, name: str, was: str, flags: int) -> os.stat_result:
    """The stat of ``name`` in ``directory``, a regular file (not a link) that still holds ``was``."""
    try:
        fd = os.open(name, os.O_RDONLY | flags, dir_fd=directory)
    except OSError as exc:
        raise SourceNotWritten(f"cannot open it now ({exc.strerror}): a link or gone; outputs not updated") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        expected = was.encode("utf-8", "surrogatepass")
        if not stat.S_ISREG(info.st_mode):
            raise SourceNotWritten("it is not a regular file now; outputs not updated")
        if handle.read(len(expected) + 1) != expected:
            raise SourceNotWritten("changed during the run; outputs not updated; run again")
    return info


def replace_in(directory: int, name: str, data: bytes, info: os.stat_result) -> None:
    """``data`` as ``name`` in ``directory`` through an exclusive temporary file, when ``name`` is still
    the file ``info`` describes (device and inode)."""
    temporary = f".{name[:100]}.{os.urandom(6).hex()}.nbci-tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | NOFOLLOW, 0o600, dir_fd=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            os.fchmod(handle.fileno(), stat.S_IMODE(info.st_mode))
        now = os.stat(name, dir_fd=directory, follow_symlinks=False)
        if (now.st_dev, now.st_ino) != (info.st_dev, info.st_ino):
            raise SourceNotWritten("replaced during the run; outputs not updated; run again")
        os.replace(temporary, name, src_dir_fd=directory, dst_dir_fd=directory)
    except BaseException:
        try:
            os.unlink(temporary, dir_fd=directory)
        except OSError:
            pass
        raise

