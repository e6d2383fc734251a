"""Property-based tests: option and glob parsing, bad input on the command line, malformed notebooks."""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import io
import json
import math
import os
import re
import shlex
from pathlib import Path, PurePosixPath
from typing import List, Tuple

import nbformat
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from nbci import cli
from nbci.config import parse_size, split_list
from nbci.discover import relative_pattern, translate_glob
from nbci.errors import ConfigError
from nbci.execute import InvalidNotebook, kernel_name, read_notebook
from nbci.iopub import json_string_prefix

# what a real argv or environment can hold: no NUL, no lone surrogates
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40)
NAME_CHARS = st.sampled_from("ab.-_ é[]!*?")
SEGMENT = st.text(st.sampled_from("ab.-_ é"), min_size=1, max_size=6).filter(lambda s: s not in (".", ".."))
GLOB_SEGMENT = st.text(NAME_CHARS, min_size=1, max_size=8).filter(lambda s: "**" not in s and s != ".")


# --- option values --------------------------------------------------------------------------


@given(st.lists(TEXT.filter(lambda s: s and "\n" not in s and "\r" not in s), max_size=6))
def test_split_list_round_trips_shell_quoted_paths(paths: List[str]) -> None:
    assert split_list(" ".join(shlex.quote(p) for p in paths)) == paths
    assert split_list("\n".join(shlex.quote(p) for p in paths)) == paths


@given(TEXT)
def test_split_list_raises_only_config_error(text: str) -> None:
    try:
        items = split_list(text)
    except ConfigError as exc:
        assert "\n" not in str(exc).strip()
    else:
        assert all(isinstance(item, str) for item in items)


@given(st.integers(0, 10**6), st.sampled_from(["", "k", "K", "M", "m", "G", "g", "T", "KB", "MiB", "GiB", "b"]))
def test_parse_size_scales_units(number: int, unit: str) -> None:
    scale = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}[unit[:1].lower() if unit[:1] != "b" else ""]
    assert parse_size(f"{number}{unit}") == number * scale


@given(TEXT)
@example("9" * 400)
@example("1e3M")
def test_parse_size_raises_only_config_error(text: str) -> None:
    try:
        size = parse_size(text)
    except ConfigError as exc:
        assert repr(text) in str(exc) or text in str(exc)
    else:
        assert isinstance(size, int) and size >= 0


@given(st.floats(min_value=0, max_value=1e9, allow_nan=False))
def test_seconds_reads_any_non_negative_number(value: float) -> None:
    parsed = cli.seconds(repr(value))
    assert parsed is None if value == 0 else parsed == value


@given(TEXT)
@example("inf")
@example("0.000")
@example("-0")
@example("1e999")
@example("nan")
def test_seconds_is_none_or_a_finite_positive_number(text: str) -> None:
    try:
        value = cli.seconds(text)
    except argparse.ArgumentTypeError:
        return
    assert value is None or (math.isfinite(value) and value > 0)


# --- globs ----------------------------------------------------------------------------------


@given(GLOB_SEGMENT, st.text(NAME_CHARS, max_size=8))
@example("[!]", "!")
@example("[z-a]", "b")
@example("[a-]", "-")
@example("[]]", "]")
@example("[!]]", "a")
@example("[\\]", "\\")
@example("[a&&b]", "&")
def test_translate_glob_agrees_with_fnmatch_on_one_name(pattern: str, name: str) -> None:
    try:
        expected = fnmatch.fnmatchcase(name, pattern)
    except re.error:  # Python < 3.11 rejects reversed ranges such as [z-a]: so must we, in one line
        with pytest.raises(ConfigError):
            translate_glob(pattern)
        return
    assert bool(translate_glob(pattern).match(name)) == expected


@given(st.lists(GLOB_SEGMENT, min_size=1, max_size=3), st.data())
def test_translate_glob_agrees_with_purepath_match_at_equal_depth(segments: List[str], data) -> None:
    path_parts = data.draw(st.lists(SEGMENT, min_size=len(segments), max_size=len(segments)))
    pattern, path = "/".join(segments), "/".join(path_parts)
    if fnmatch_rejects(pattern) or any(fnmatch_rejects(s) for s in segments):  # Python < 3.11 (see below)
        with pytest.raises(ConfigError):
            translate_glob(pattern)
        return
    assert bool(translate_glob(pattern).match(path)) == PurePosixPath(path).match(pattern)


@given(st.lists(SEGMENT, min_size=1, max_size=4), GLOB_SEGMENT)
def test_double_star_matches_at_any_depth(folders: List[str], last: str) -> None:
    name = folders[-1]
    path = "/".join(folders)
    assert bool(translate_glob("**/" + last).match(path)) == fnmatch.fnmatchcase(name, last)
    assert translate_glob("**").match(path)


@given(st.text(st.sampled_from("a.*?[]!\\-^"), max_size=12))
@example("a[!b]a")
def test_translate_glob_always_compiles_and_only_double_star_crosses_folders(pattern: str) -> None:
    assume("**" not in pattern)
    if fnmatch_rejects(pattern):  # Python < 3.11: reversed ranges are an error, said in one line
        with pytest.raises(ConfigError):
            translate_glob(pattern)
        return
    assert not translate_glob(pattern).match("a/a")


def fnmatch_rejects(pattern: str) -> bool:
    """Whether this Python's fnmatch refuses the pattern (before 3.11 it refuses ranges like z-a)."""
    try:
        re.compile(fnmatch.translate(pattern))
    except re.error:
        return True
    return False


@given(st.lists(st.sampled_from(["a", "b", "..", ".", "*", "**"]), min_size=1, max_size=6))
def test_patterns_never_leave_the_working_directory(parts: List[str]) -> None:
    root = Path("/work/root")
    pattern = "/".join(parts)
    try:
        rel = relative_pattern(pattern, root)
    except ConfigError as exc:
        assert "outside the working directory" in str(exc)
        assert os.path.normpath(pattern) == ".." or os.path.normpath(pattern).startswith("../")
    else:
        assert rel == "" or not (rel == ".." or rel.startswith("../"))
        assert os.path.normpath(root / rel).startswith(str(root))


# --- the command line, in-process -----------------------------------------------------------


@pytest.fixture(scope="module")
def empty_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("empty")


@contextlib.contextmanager
def inside(folder: Path):
    before = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)


def run_cli(argv: List[str], folder: Path, environ=None) -> Tuple[int, str]:
    err = io.StringIO()
    with inside(folder), contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = cli.main(argv, environ={} if environ is None else environ)
    return code, err.getvalue()


def run_actions() -> List[argparse.Action]:
    parser = cli.build_parser({})
    run = parser._subparsers._group_actions[0].choices["run"]  # type: ignore[union-attr]
    return [action for action in run._actions if action.dest != "help"]


OPTIONS = sorted(max(a.option_strings, key=len) for a in run_actions() if a.option_strings)
VARIABLES = sorted(a.dest.upper() for a in run_actions())
FINE_WITHOUT_NOTEBOOKS = ("warn", "ignore")  # --if-no-notebooks values that make an empty folder exit 0


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None, max_examples=300)
@given(st.sampled_from(OPTIONS), TEXT)
@example("--timeout", "inf")
@example("--timeout", "-1")
@example("--retry-on", "a{99999999999}")
@example("--retry-on", "(" * 200)
@example("--memory-limit", "9" * 400)
@example("--exclude", "[!]")
@example("--exclude", "[z-a]")
@example("--jobs", "9" * 30)
def test_any_option_value_in_an_empty_folder_is_one_line_and_exit_2(empty_dir: Path, option: str,
                                                                     value: str) -> None:
    """Whether the value is bad (one line naming it) or fine (one line: no notebooks), never a traceback."""
    assume(not (option == "--if-no-notebooks" and value in FINE_WITHOUT_NOTEBOOKS))
    code, err = run_cli(["run", f"{option}={value}"], empty_dir)
    assert code == 2, err
    assert err.startswith("nbci: error: ") and err.count("\n") == 1, err


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None, max_examples=200)
@given(st.lists(TEXT, min_size=1, max_size=3))
@example(["../outside.ipynb"])
@example(["a" * 300 + ".ipynb"])
@example(["[!]"])
def test_any_notebook_argument_in_an_empty_folder_is_one_line_and_exit_2(empty_dir: Path,
                                                                         patterns: List[str]) -> None:
    code, err = run_cli(["run", "--", *patterns], empty_dir)
    assert code == 2, err
    assert err.startswith("nbci: error: ") and err.count("\n") == 1, err


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None, max_examples=200)
@given(st.sampled_from(VARIABLES), TEXT)
@example("TIMEOUT", "inf")
@example("NOTEBOOKS", "'unclosed")
def test_any_nbci_variable_in_an_empty_folder_is_one_line_and_exit_2(empty_dir: Path, name: str,
                                                                     value: str) -> None:
    assume(not (name == "IF_NO_NOTEBOOKS" and value.strip().lower() in FINE_WITHOUT_NOTEBOOKS))
    code, err = run_cli(["run"], empty_dir, environ={f"NBCI_{name}": value})
    assert code == 2, err
    assert err.startswith("nbci: error: ") and err.count("\n") == 1, err


@pytest.mark.parametrize("args", [["../a.ipynb"], ["../*.ipynb"], ["/etc/*.ipynb"], ["a/../../b.ipynb"],
                                  ["sub/../../**/*.ipynb"], ["--exclude", "../x"]])
def test_globs_escaping_the_working_directory_exit_2(empty_dir: Path, args: List[str]) -> None:
    code, err = run_cli(["run", *args], empty_dir)
    assert code == 2 and "outside the working directory" in err and err.count("\n") == 1, err


def test_unknown_option_and_choice_name_what_to_fix(empty_dir: Path) -> None:
    code, err = run_cli(["run", "--frobnicate"], empty_dir)
    assert code == 2 and "--frobnicate" in err
    code, err = run_cli(["run", "--if-no-notebooks", "maybe"], empty_dir)
    assert code == 2 and "maybe" in err and err.count("\n") == 1
    code, err = run_cli(["run", "--timeout", "inf"], empty_dir)
    assert code == 2 and "--timeout" in err


# --- malformed notebooks --------------------------------------------------------------------

VALID = nbformat.v4.new_notebook(
    cells=[nbformat.v4.new_code_cell("print(1)"), nbformat.v4.new_markdown_cell("# title")],
    metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
)
VALID_JSON = json.loads(nbformat.writes(VALID))
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)


def paths_of(value, prefix=()) -> list:
    """Every path to a value in a JSON document, as key/index tuples."""
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += paths_of(child, prefix + (key,))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += paths_of(child, prefix + (index,))
    return found


@st.composite
def mutated_notebooks(draw) -> dict:
    doc = json.loads(json.dumps(VALID_JSON))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(paths_of(doc)))
        if not path:
            return draw(JSON_VALUES)
        parent = doc
        for step in path[:-1]:
            parent = parent[step]
        if draw(st.booleans()):
            parent[path[-1]] = draw(JSON_VALUES)
        elif isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent.pop(path[-1])
    return doc


def check_reads_or_invalid(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "nb.ipynb"
    path.write_bytes(data)
    try:
        nb = read_notebook(tmp_path, path.name).nb
    except InvalidNotebook as exc:
        assert str(exc).strip() and "\n" not in str(exc)  # one line saying why
        return
    # what reads must be usable by the scheduler and the executor
    assert isinstance(kernel_name(nb, None), str)
    for cell in nb.cells:
        assert cell.cell_type in ("code", "markdown", "raw") and isinstance(cell.source, str)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(st.binary(max_size=200))
@example(b"\xff\xfe")
@example(b"[" * 100000)
@example(b"{}")
@example(b"null")
def test_random_bytes_read_or_raise_invalid_notebook(tmp_path: Path, data: bytes) -> None:
    check_reads_or_invalid(tmp_path, data)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None, max_examples=300)
@given(mutated_notebooks())
def test_mutated_notebooks_read_or_raise_invalid_notebook(tmp_path: Path, doc) -> None:
    check_reads_or_invalid(tmp_path, json.dumps(doc).encode("utf-8"))


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(st.binary(max_size=64), st.integers(0, 64))
def test_truncated_notebooks_read_or_raise_invalid_notebook(tmp_path: Path, noise: bytes, cut: int) -> None:
    text = nbformat.writes(VALID).encode("utf-8")
    check_reads_or_invalid(tmp_path, text[: len(text) * cut // 64] + noise)


# --- cutting JSON strings (huge outputs) -----------------------------------------------------


@given(st.text(), st.integers(0, 400), st.booleans())
def test_a_json_string_cut_anywhere_decodes_to_a_prefix(text: str, cut: int, ascii_only: bool) -> None:
    body = json.dumps(text, ensure_ascii=ascii_only).encode("utf-8")[1:-1]
    cut = min(cut, len(body))
    kept = json_string_prefix(body[:cut])
    kept.encode("utf-8")
    if all(not 0xD800 <= ord(c) <= 0xDFFF for c in text):
        assert text.startswith(kept)
    assert len(json.dumps(kept, ensure_ascii=ascii_only).encode("utf-8")) - 2 >= cut - 16
