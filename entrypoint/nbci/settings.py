"""The settings file (``.nbci.yml``): run defaults, and settings per notebook by glob.

```yaml
defaults:            # any option of `nbci run`, named as on the command line without the dashes
  timeout: 300
notebooks:           # applied in order; a later entry wins for the same notebook and key
  - glob: "heavy/*.ipynb"
    notebook-timeout: 1800
  - glob: "gpu/**"
    skip: "needs a GPU"
  - glob: "report.ipynb"
    parameters: {rows: 100}
    cwd: root
```

Precedence, lowest first: nbci's defaults, the file's ``defaults``, ``NBCI_*`` variables, the
command line, then the file's ``notebooks`` entries (they name single notebooks, so they are the
most specific); for ``parameters`` the command line wins over the file (papermill's habit). The
file is read with PyYAML's ``safe_load`` rules, without aliases (``*name``: they let a few bytes
stand for gigabytes), at most ``MAX_DEPTH`` levels deep and ``MAX_NODES`` values; it is part of the repository, so it is
read only when it is a regular file of at most ``MAX_SETTINGS_BYTES`` inside the working directory.
Every mistake is one ``ConfigError`` naming the file, the line, the key and what is allowed.
"""

from __future__ import annotations

import functools
import math
import os
import reprlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

from nbci.discover import Glob, translate_glob
from nbci.errors import ConfigError
from nbci.files import UnsafePath, inside, open_inside
from nbci.masking import check_env_names
from nbci.outputs import MODES, SCOPES, check_mask, pillow_available
from nbci.parameters import check_name, plain_value, yaml_problem

DEFAULT_FILE = ".nbci.yml"
MAX_SETTINGS_BYTES = 2**20
MAX_DEPTH = 32  # lists and mappings inside each other
MAX_NODES = 10_000  # values, keys, lists and mappings in all
MAX_CACHE_INPUT_STARS = 2
CWD_CHOICES = ("notebook", "root")  # or a folder, relative to the working directory
# keys of a ``notebooks`` entry, besides ``glob``, and the option each one overrides
NOTEBOOK_KEYS = {"timeout": "timeout", "notebook-timeout": "notebook_timeout", "allow-errors": "allow_errors",
                 "retries": "retries", "kernel": "kernel", "cwd": "cwd", "skip": "skip", "parameters": "parameters",
                 "check-outputs": "check_outputs", "check-cells": "check_cells", "output-masks": "output_masks",
                 "image-tolerance": "image_tolerance", "requires-env": "requires_env", "default-masks": "default_masks"}


@dataclass(frozen=True)
class NotebookSettings:
    """What one notebook runs with: the run's options, overridden by the entries matching it."""

    timeout: Optional[float] = 600.0
    notebook_timeout: Optional[float] = None
    allow_errors: bool = False
    retries: int = 0
    kernel: Optional[str] = None
    cwd: str = "notebook"  # "notebook", "root", or a folder relative to the working directory
    skip: Optional[str] = None  # why the notebook is not run
    parameters: Dict[str, Any] = field(default_factory=dict)
    check_outputs: str = "off"  # off, warn or fail (nbci.outputs)
    check_cells: str = "all"  # all, or marked: only cells marked NBVAL_CHECK_OUTPUT
    output_masks: Tuple[Tuple[str, str], ...] = ()  # (regex, replacement) pairs, after the default masks
    image_tolerance: Optional[float] = None  # None: images are not compared
    requires_env: Tuple[str, ...] = ()  # variables that must be set and not empty, or the notebook is skipped
    default_masks: bool = True  # apply nbci.outputs.DEFAULT_MASKS before comparing


@dataclass
class Rule:
    """One ``notebooks`` entry: a glob and the settings it sets, with the file and line for errors."""

    glob: str
    values: Dict[str, Any]
    where: str  # "FILE:LINE"
    matcher: Glob


@dataclass
class SettingsFile:
    """A parsed settings file: option defaults (by option dest) and per-notebook rules."""

    path: Path
    defaults: Dict[str, Tuple[Any, str]] = field(default_factory=dict)  # dest -> (value, "FILE:LINE")
    rules: List[Rule] = field(default_factory=list)


def find_settings_file(explicit: Optional[str], root: Path) -> Optional[Path]:
    """``--config FILE`` (which must exist), else ``.nbci.yml`` in the working directory when present
    (as any kind of file: one nbci will not read is refused, not passed over)."""
    if explicit:
        path = Path(explicit)
        if not os.path.lexists(path):
            raise ConfigError(f"--config {explicit}: no such file; pass the path of a settings file such as .nbci.yml")
        return path
    default = root / DEFAULT_FILE
    return default if os.path.lexists(default) else None


def read_settings_text(path: Path, root: Path) -> str:
    """The text of a settings file: a regular UTF-8 file of at most ``MAX_SETTINGS_BYTES`` whose real
    path is inside ``root`` (or anywhere, for a path outside ``root`` the command line named)."""
    absolute = Path(os.path.abspath(path))
    base = root if inside(absolute, root) else Path(absolute.anchor)
    try:
        with open_inside(base, os.path.relpath(absolute, base)) as handle:
            data = handle.read(MAX_SETTINGS_BYTES + 1)
    except UnsafePath as exc:
        raise ConfigError(f"{path}: nbci does not read this settings file: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    if len(data) > MAX_SETTINGS_BYTES:
        raise ConfigError(f"{path}: over {MAX_SETTINGS_BYTES // 2**10} KiB, too big for a settings file: "
                          "keep it to defaults and notebooks entries")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: not UTF-8 text: save the file as UTF-8") from None


def load_settings(path: Path, root: Path) -> SettingsFile:
    """Parse and check a settings file; raise ``ConfigError`` on the first mistake, with its line."""
    import yaml

    text = read_settings_text(path, root)
    try:
        node = yaml.compose(text, Loader=settings_loader(path))
    except yaml.YAMLError as exc:
        line, problem = yaml_problem(exc)
        raise ConfigError(f"{path}{f':{line}' if line else ''}: not valid YAML ({problem}): fix the file's syntax") from None
    settings = SettingsFile(path)
    if node is None:
        return settings
    top = mapping(path, node, "the file")
    for key, (key_node, value_node) in top.items():
        if key == "defaults":
            for name, (name_node, option_node) in mapping(path, value_node, "defaults").items():
                value = value_of(path, option_node)
                if name == "parameters":  # for every notebook, under any entry's and the command line's
                    value = check_value(name, value, where(path, option_node))
                    settings.rules.insert(0, Rule("**", {"parameters": value}, where(path, name_node),
                                                  translate_glob("**")))
                    continue
                if name in ("output-masks", "requires-env"):  # for every notebook, under any entry's
                    checked = check_value(name, value, where(path, option_node))
                    settings.rules.insert(0, Rule("**", {NOTEBOOK_KEYS[name]: checked}, where(path, name_node),
                                                  translate_glob("**")))
                    continue
                if name == "cache-inputs":
                    for pattern in value if isinstance(value, list) else str(value).split():
                        check_cache_input(str(pattern), f"{where(path, option_node)}: cache-inputs")
                settings.defaults[name.replace("-", "_")] = (value, where(path, name_node))
        elif key == "notebooks":
            settings.rules += [rule(path, entry) for entry in sequence(path, value_node, "notebooks")]
        else:
            raise ConfigError(f"{where(path, key_node)}: unknown key {shown(key)}: the file holds 'defaults' and 'notebooks'")
    return settings


def rule(path: Path, node: Any) -> Rule:
    """One ``notebooks`` entry, checked."""
    entry = mapping(path, node, "a notebooks entry")
    if "glob" not in entry:
        raise ConfigError(f"{where(path, node)}: a notebooks entry needs 'glob', e.g. glob: \"heavy/*.ipynb\"")
    values: Dict[str, Any] = {}
    glob = ""
    for key, (key_node, value_node) in entry.items():
        value = value_of(path, value_node)
        if key == "glob":
            if not isinstance(value, str) or not value:
                raise ConfigError(f"{where(path, value_node)}: glob must be a text pattern such as \"heavy/*.ipynb\"")
            glob = value
        elif key in NOTEBOOK_KEYS:
            values[NOTEBOOK_KEYS[key]] = check_value(key, value, where(path, value_node))
        else:
            allowed = ", ".join(["glob", *NOTEBOOK_KEYS])
            raise ConfigError(f"{where(path, key_node)}: unknown key {shown(key)} in a notebooks entry: use {allowed}")
    try:
        matcher = translate_glob(glob)
    except ConfigError as exc:
        raise ConfigError(f"{where(path, entry['glob'][1])}: {exc}") from None
    return Rule(glob, values, where(path, node), matcher)


def check_value(key: str, value: Any, at: str) -> Any:
    """A ``notebooks`` entry's value in the type its key takes."""
    if key in ("timeout", "notebook-timeout"):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
            raise ConfigError(f"{at}: {key} must be a number of seconds (0 for no limit), not {shown(value)}")
        return float(value) or None
    if key in ("allow-errors", "default-masks"):
        if not isinstance(value, bool):
            raise ConfigError(f"{at}: {key} must be true or false, not {shown(value)}")
        return value
    if key == "retries":
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"{at}: retries must be a whole number, 0 or more, not {shown(value)}")
        return value
    if key == "parameters":
        if not isinstance(value, dict):
            raise ConfigError(f"{at}: parameters must be a mapping of names to values, e.g. {{rows: 100}}")
        return {check_name(name, f"{at}: parameters"): item for name, item in value.items()}
    if key == "cwd":
        return check_cwd(value, at)
    if key in ("check-outputs", "check-cells"):
        value = "off" if value is False and key == "check-outputs" else value  # YAML reads a bare off as false
        choices = MODES if key == "check-outputs" else SCOPES
        if value not in choices:
            raise ConfigError(f"{at}: {key} must be one of {', '.join(choices)}, not {shown(value)}")
        return value
    if key == "output-masks":
        return check_masks(value, at)
    if key == "image-tolerance":
        return check_tolerance(value, at)
    if key == "requires-env":
        return check_env_names(value if isinstance(value, list) else [value], f"{at}: requires-env")
    if not isinstance(value, str) or not value.strip():  # kernel, skip
        raise ConfigError(f"{at}: {key} must be text, not {shown(value)}")
    return value


def check_masks(value: Any, at: str) -> Tuple[Tuple[str, str], ...]:
    """``output-masks``: a list of ``{regex: ..., replace: ...}`` mappings."""
    if not isinstance(value, list) or not all(isinstance(item, dict) and set(item) <= {"regex", "replace"}
                                              for item in value):
        raise ConfigError(f"{at}: output-masks must be a list of mappings such as {{regex: 'id=\\d+', replace: 'id=N'}}")
    masks = [check_mask(item.get("regex"), item.get("replace", ""), f"{at}: output-masks") for item in value]
    return tuple((mask.pattern, mask.replace) for mask in masks)


def check_tolerance(value: Any, at: str) -> float:
    """``image-tolerance``: a root-mean-square pixel difference from 0 to 255."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 255:
        raise ConfigError(f"{at}: image-tolerance must be a number from 0 to 255, not {shown(value)}")
    if not pillow_available():
        raise ConfigError(f"{at}: image-tolerance compares decoded pixels with Pillow: pip install 'nbci[images]'")
    return float(value)


def check_cwd(value: Any, at: str) -> str:
    """``notebook``, ``root`` or a relative folder."""
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{at}: cwd must be notebook, root or a folder relative to the working directory")
    if value not in CWD_CHOICES and leaves_root(value):
        raise ConfigError(f"{at}: cwd {shown(value)} must stay inside the working directory: "
                          "use notebook, root or a relative folder")
    return value


def check_cache_input(pattern: str, at: str) -> str:
    """A ``cache-inputs`` glob: relative, never climbing out of the working directory, and with at
    most ``MAX_CACHE_INPUT_STARS`` ``**`` (each one more walks the tree below the last again)."""
    if leaves_root(pattern):
        raise ConfigError(f"{at} {shown(pattern)} must stay inside the working directory: "
                          "use a relative path without '..'")
    if Path(pattern).parts.count("**") > MAX_CACHE_INPUT_STARS:
        raise ConfigError(f"{at} {shown(pattern)} has more than {MAX_CACHE_INPUT_STARS} '**': use one, "
                          "e.g. data/**/*.csv")
    return pattern


def leaves_root(path: str) -> bool:
    """Whether a relative path is absolute or climbs with ``..``."""
    return os.path.isabs(path) or ".." in Path(path).parts


def shown(value: Any) -> str:
    """A value from the file as an error message quotes it: short, whatever its size."""
    return reprlib.repr(value)


def settings_for(base: NotebookSettings, rules: List[Rule], path: str, parameters: Mapping[str, Any]) -> NotebookSettings:
    """``base`` overridden by every rule matching ``path`` in order, then ``parameters`` (the command
    line's) over the rules' parameters."""
    merged: Dict[str, Any] = {}
    params: Dict[str, Any] = {}
    for entry in rules:
        if entry.matcher.match(path):
            merged.update({k: v for k, v in entry.values.items() if k != "parameters"})
            params.update(entry.values.get("parameters", {}))
    params.update(parameters)
    return replace(base, parameters=params, **merged)


# --- YAML nodes, with their lines -----------------------------------------------------------------


def where(path: Path, node: Any) -> str:
    return f"{path}:{node.start_mark.line + 1}"


def mapping(path: Path, node: Any, what: str) -> Dict[str, Tuple[Any, Any]]:
    """A mapping node's entries by key: (key node, value node); keys must be text and unique."""
    import yaml

    if not isinstance(node, yaml.MappingNode):
        raise ConfigError(f"{where(path, node)}: {what} must be a mapping (key: value lines)")
    entries: Dict[str, Tuple[Any, Any]] = {}
    for key_node, value_node in node.value:
        key = value_of(path, key_node)
        if not isinstance(key, str):
            raise ConfigError(f"{where(path, key_node)}: keys must be text, not {shown(key)}")
        if key in entries:
            raise ConfigError(f"{where(path, key_node)}: {shown(key)} is given twice in {what}")
        entries[key] = (key_node, value_node)
    return entries


def sequence(path: Path, node: Any, what: str) -> List[Any]:
    import yaml

    if not isinstance(node, yaml.SequenceNode):
        raise ConfigError(f"{where(path, node)}: {what} must be a list (lines starting with '- ')")
    return list(node.value)


def value_of(path: Path, node: Any) -> Any:
    """A node as ``yaml.safe_load`` would give it, dates as ISO text."""
    import yaml

    try:
        value = yaml.SafeLoader("").construct_object(node, deep=True)
    except (yaml.YAMLError, ValueError) as exc:  # an unknown !!tag, bad !!binary, an int of 5000 digits
        line, problem = yaml_problem(exc)
        raise ConfigError(f"{path}:{line or node.start_mark.line + 1}: cannot read this value ({problem}): "
                          "use plain text, numbers, true/false, lists and mappings") from None
    try:
        return plain_value(value)
    except ValueError as exc:  # !!binary, !!set, !!omap
        raise ConfigError(f"{where(path, node)}: {exc}") from None


@functools.lru_cache(maxsize=None)
def settings_loader(path: Path) -> type:
    """PyYAML's safe loader for ``path``, refusing aliases, nesting deeper than ``MAX_DEPTH`` and
    more than ``MAX_NODES`` nodes."""
    import yaml

    class Loader(yaml.SafeLoader):
        depth = nodes = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            line = self.peek_event().start_mark.line + 1
            if self.check_event(yaml.AliasEvent):
                raise ConfigError(f"{path}:{line}: YAML aliases (*name) are not allowed in a settings file: "
                                  "write the value out")
            if self.depth >= MAX_DEPTH:
                raise ConfigError(f"{path}:{line}: nested more than {MAX_DEPTH} levels deep: flatten it")
            if self.nodes >= MAX_NODES:
                raise ConfigError(f"{path}:{line}: more than {MAX_NODES} values in a settings file: use globs "
                                  "that cover many notebooks")
            self.nodes += 1
            self.depth += 1
            try:
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

    return Loader
