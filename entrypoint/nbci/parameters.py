"""Parameters, papermill's way: given values go into a new cell tagged ``injected-parameters``.

The cell goes right after the first cell tagged ``parameters`` (whose values are the defaults),
or first in the notebook when none is tagged; a cell already tagged ``injected-parameters`` (a
notebook executed by papermill before) is replaced. Values come as YAML (``-p rows 5`` gives the
int 5, ``-p name abc`` the text "abc") and are written as Python literals: parameters are for
Python kernels.
"""

from __future__ import annotations

import keyword
import math
from pathlib import Path
from typing import Any, Dict, Iterable, Mapping, Optional, Tuple

import nbformat
from nbformat import NotebookNode

from nbci.errors import ConfigError, InvalidNotebook

PARAMETERS_TAG = "parameters"
INJECTED_TAG = "injected-parameters"


class NotPython(InvalidNotebook):
    """The notebook's language is not Python, so parameters cannot be written into it."""


def parse_value(name: str, text: str) -> Any:
    """A ``-p NAME VALUE`` value read as YAML; ``ConfigError`` when it is not valid YAML."""
    import yaml

    try:
        return plain_value(yaml.safe_load(text))
    except yaml.YAMLError as exc:
        raise ConfigError(f"-p {name} {text!r}: not a valid YAML value ({yaml_problem(exc)[1]}); quote text, "
                          "e.g. -p name \"'a: b'\"") from None
    except ValueError as exc:  # a set or bytes; an int of 5000 digits
        raise ConfigError(f"-p {name}: {exc}") from None


def command_line_parameters(pairs: Iterable[Tuple[str, str]], file: Optional[str], inline: Optional[str]) -> Dict[str, Any]:
    """The command line's parameters: ``--parameters FILE``, then ``--parameters-yaml``, then each ``-p``."""
    values: Dict[str, Any] = {}
    if file:
        try:
            text = Path(file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"--parameters {file}: cannot read it ({getattr(exc, 'strerror', None) or exc})") from None
        values.update(parse_mapping(text, f"--parameters {file}"))
    if inline and inline.strip():
        values.update(parse_mapping(inline, "--parameters-yaml"))
    for name, text in pairs:
        values[check_name(name, "-p")] = parse_value(name, text)
    return values


def parse_mapping(text: str, what: str) -> Dict[str, Any]:
    """A YAML mapping of parameter names to values."""
    import yaml

    try:
        data = plain_value(yaml.safe_load(text))
    except yaml.YAMLError as exc:
        line, problem = yaml_problem(exc)
        raise ConfigError(f"{what}:{f' line {line}' if line else ''} not valid YAML ({problem})") from None
    except ValueError as exc:  # a set or bytes; an int of 5000 digits
        raise ConfigError(f"{what}: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{what}: must be a YAML mapping of names to values, e.g. 'rows: 100'")
    return {check_name(name, what): value for name, value in data.items()}


def yaml_problem(exc: Exception) -> Tuple[Optional[int], str]:
    """The 1-based line (when known) and the one-line problem of a PyYAML error."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or (str(exc).splitlines() or [type(exc).__name__])[0]
    return (mark.line + 1 if mark is not None else None), problem


def check_name(name: Any, what: str) -> str:
    if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
        raise ConfigError(f"{what}: parameter name {name!r} is not a Python variable name")
    return name


def plain_value(value: Any) -> Any:
    """YAML's dates as ISO text; text, numbers, booleans, null, lists and mappings as YAML gave them;
    ``ValueError`` for anything else (bytes, sets, pairs: neither JSON nor a Python literal of
    nbci's holds them)."""
    import datetime

    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    if isinstance(value, dict):
        return {plain_value(key): plain_value(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain_value(item) for item in value]
    if value is None or isinstance(value, (str, int, float)):
        return value
    raise ValueError(f"{type(value).__name__} values (from a YAML !!tag) are not allowed: "
                     "use text, numbers, true/false, null, lists and mappings")


def inject(nb: NotebookNode, parameters: Mapping[str, Any]) -> Optional[int]:
    """Insert (or replace) the ``injected-parameters`` cell and return its index (None when there are
    no parameters); raise ``NotPython`` for a notebook in another language."""
    if not parameters:
        return None
    language = (nb.metadata.get("kernelspec", {}).get("language")
                or nb.metadata.get("language_info", {}).get("name") or "python")
    if str(language).lower() != "python":
        raise NotPython(f"parameters are written as Python, and this notebook's language is {language}")
    cells = [cell for cell in nb.cells if INJECTED_TAG not in tags(cell)]
    at = next((i + 1 for i, cell in enumerate(cells) if PARAMETERS_TAG in tags(cell)), 0)
    source = "# Parameters\n" + "".join(f"{name} = {python_literal(value)}\n" for name, value in parameters.items())
    cell = nbformat.v4.new_code_cell(source, metadata={"tags": [INJECTED_TAG]})
    cells.insert(at, cell)
    nb.cells = cells
    return at


def tags(cell: Any) -> list:
    found = cell.get("metadata", {}).get("tags", [])
    return found if isinstance(found, list) else []


def python_literal(value: Any) -> str:
    """``value`` as Python source that evaluates to it (YAML gives text, numbers, bools, None, lists, maps)."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"float({str(value)!r})"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{python_literal(k)}: {python_literal(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(python_literal(item) for item in value) + "]"
    return repr(value)
