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
file is read with PyYAML's ``safe_load`` rules; every mistake is one ``ConfigError`` naming the
file, the line, the key and what is allowed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Pattern, Tuple

from nbci.errors import ConfigError
from nbci.parameters import check_name, plain_value, yaml_problem

DEFAULT_FILE = ".nbci.yml"
CWD_CHOICES = ("notebook", "root")  # or a folder, relative to the working directory
# keys of a ``notebooks`` entry, besides ``glob``, and the option each one overrides
NOTEBOOK_KEYS = {"timeout": "timeout", "notebook-timeout": "notebook_timeout", "allow-errors": "allow_errors",
                 "retries": "retries", "kernel": "kernel", "cwd": "cwd", "skip": "skip", "parameters": "parameters"}


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


@dataclass
class Rule:
    """One ``notebooks`` entry: a glob and the settings it sets, with the file and line for errors."""

    glob: str
    values: Dict[str, Any]
    where: str  # "FILE:LINE"
    regex: Optional[Pattern[str]] = None


@dataclass
class SettingsFile:
    """A parsed settings file: option defaults (by option dest) and per-notebook rules."""

    path: Optional[Path] = None
    defaults: Dict[str, Tuple[Any, str]] = field(default_factory=dict)  # dest -> (value, "FILE:LINE")
    rules: List[Rule] = field(default_factory=list)


def find_settings_file(explicit: Optional[str], root: Path) -> Optional[Path]:
    """``--config FILE`` (which must exist), else ``.nbci.yml`` in the working directory when present."""
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"--config {explicit}: no such file; pass the path of a settings file such as .nbci.yml")
        return path
    default = root / DEFAULT_FILE
    return default if default.is_file() else None


def load_settings(path: Path) -> SettingsFile:
    """Parse and check a settings file; raise ``ConfigError`` on the first mistake, with its line."""
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read it ({getattr(exc, 'strerror', None) or exc})") from None
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
                if name == "parameters":  # for every notebook, under any entry's and the command line's
                    value = check_value(name, plain_value(value_of(option_node)), where(path, option_node))
                    settings.rules.insert(0, Rule("**", {"parameters": value}, where(path, name_node)))
                    continue
                settings.defaults[name.replace("-", "_")] = (plain_value(value_of(option_node)),
                                                           where(path, name_node))
        elif key == "notebooks":
            settings.rules += [rule(path, entry) for entry in sequence(path, value_node, "notebooks")]
        else:
            raise ConfigError(f"{where(path, key_node)}: unknown key {key!r}: the file holds 'defaults' and 'notebooks'")
    return settings


def rule(path: Path, node: Any) -> Rule:
    """One ``notebooks`` entry, checked."""
    entry = mapping(path, node, "a notebooks entry")
    if "glob" not in entry:
        raise ConfigError(f"{where(path, node)}: a notebooks entry needs 'glob', e.g. glob: \"heavy/*.ipynb\"")
    values: Dict[str, Any] = {}
    glob = ""
    for key, (key_node, value_node) in entry.items():
        value = plain_value(value_of(value_node))
        if key == "glob":
            if not isinstance(value, str) or not value:
                raise ConfigError(f"{where(path, value_node)}: glob must be a text pattern such as \"heavy/*.ipynb\"")
            glob = value
        elif key in NOTEBOOK_KEYS:
            values[NOTEBOOK_KEYS[key]] = check_value(key, value, where(path, value_node))
        else:
            allowed = ", ".join(["glob", *NOTEBOOK_KEYS])
            raise ConfigError(f"{where(path, key_node)}: unknown key {key!r} in a notebooks entry: use {allowed}")
    return Rule(glob, values, where(path, node))


def check_value(key: str, value: Any, at: str) -> Any:
    """A ``notebooks`` entry's value in the type its key takes."""
    if key in ("timeout", "notebook-timeout"):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ConfigError(f"{at}: {key} must be a number of seconds (0 for no limit), not {value!r}")
        return float(value) or None
    if key == "allow-errors":
        if not isinstance(value, bool):
            raise ConfigError(f"{at}: allow-errors must be true or false, not {value!r}")
        return value
    if key == "retries":
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"{at}: retries must be a whole number, 0 or more, not {value!r}")
        return value
    if key == "parameters":
        if not isinstance(value, dict):
            raise ConfigError(f"{at}: parameters must be a mapping of names to values, e.g. {{rows: 100}}")
        return {check_name(name, f"{at}: parameters"): item for name, item in value.items()}
    if key == "cwd":
        return check_cwd(value, at)
    if not isinstance(value, str) or not value.strip():  # kernel, skip
        raise ConfigError(f"{at}: {key} must be text, not {value!r}")
    return value


def check_cwd(value: Any, at: str) -> str:
    """``notebook``, ``root`` or a relative folder."""
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{at}: cwd must be notebook, root or a folder relative to the working directory")
    if value not in CWD_CHOICES and (os.path.isabs(value) or ".." in Path(value).parts):
        raise ConfigError(f"{at}: cwd {value!r} must stay inside the working directory: "
                          "use notebook, root or a relative folder")
    return value


def settings_for(base: NotebookSettings, rules: List[Rule], path: str, parameters: Mapping[str, Any]) -> NotebookSettings:
    """``base`` overridden by every rule matching ``path`` in order, then ``parameters`` (the command
    line's) over the rules' parameters."""
    from nbci.discover import translate_glob

    merged: Dict[str, Any] = {}
    params: Dict[str, Any] = {}
    for entry in rules:
        if entry.regex is None:
            entry.regex = translate_glob(entry.glob)
        if entry.regex.match(path):
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
        key = value_of(key_node)
        if not isinstance(key, str):
            raise ConfigError(f"{where(path, key_node)}: keys must be text, not {key!r}")
        if key in entries:
            raise ConfigError(f"{where(path, key_node)}: {key!r} is given twice in {what}")
        entries[key] = (key_node, value_node)
    return entries


def sequence(path: Path, node: Any, what: str) -> List[Any]:
    import yaml

    if not isinstance(node, yaml.SequenceNode):
        raise ConfigError(f"{where(path, node)}: {what} must be a list (lines starting with '- ')")
    return list(node.value)


def value_of(node: Any) -> Any:
    """A node as ``yaml.safe_load`` would give it."""
    import yaml

    return yaml.SafeLoader("").construct_object(node, deep=True)
