"""Workflow-command escaping and environment files, read back the way the runner reads them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, List, Tuple

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nbci.report import workflow_commands as wc


def unescape(text: str, prop: bool = False) -> str:
    """The runner's unescaping (ActionCommand.UnescapeValue): %25 last."""
    for escaped, char in [("%0D", "\r"), ("%0A", "\n")] + ([("%3A", ":"), ("%2C", ",")] if prop else []):
        text = text.replace(escaped, char)
    return text.replace("%25", "%")


def parse_command(line: str) -> Tuple[str, Dict[str, str], str]:
    """Split ``::name k=v,k=v::message`` like the runner: properties end at the first ``::``."""
    assert line.startswith("::")
    head, sep, message = line[2:].partition("::")
    assert sep, f"no closing '::' in {line!r}"
    name, _, props = head.partition(" ")
    properties = {}
    for pair in filter(None, props.split(",")):
        key, _, value = pair.partition("=")
        properties[key] = unescape(value, prop=True)
    return name, properties, unescape(message)


def parse_output_file(text: str) -> Dict[str, str]:
    """Read a ``$GITHUB_OUTPUT`` file as the runner does: ``k=v`` lines and ``k<<DELIM`` heredocs."""
    outputs: Dict[str, str] = {}
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line:
            continue
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delimiter = line.split("<<", 1)
            body: List[str] = []
            while lines[i] != delimiter:
                body.append(lines[i])
                i += 1
            i += 1
            outputs[name] = "\n".join(body)
        else:
            name, value = line.split("=", 1)
            outputs[name] = value
    return outputs


def test_data_escapes_percent_first():
    assert wc.escape_data("100%\r\nok") == "100%25%0D%0Aok"
    assert wc.escape_data("%0A") == "%250A"  # a literal %0A stays literal after unescaping
    assert wc.escape_data("a:b,c") == "a:b,c"


def test_property_also_escapes_colon_and_comma():
    assert wc.escape_property("C:\\x,y.ipynb") == "C%3A\\x%2Cy.ipynb"
    assert wc.escape_property("50%\n") == "50%25%0A"


@given(st.text())
def test_escaping_round_trips_through_the_runner(text):
    assert unescape(wc.escape_data(text)) == text
    escaped = wc.escape_property(text)
    assert not set(escaped) & set(":,\r\n")
    assert unescape(escaped, prop=True) == text


def test_command_leaves_out_empty_properties():
    assert wc.command("error", "boom", file="a.ipynb", line=None, title="") == "::error file=a.ipynb::boom"
    assert wc.command("endgroup") == "::endgroup::"


def test_annotation_with_awkward_path_and_message_parses_back():
    line = wc.annotation("error", "x::y\n50% done", file="dir,a/b:c=d.ipynb", line=12, end_line=13,
                         title="T: 1, 2")
    name, props, message = parse_command(line)
    assert name == "error"
    assert props == {"file": "dir,a/b:c=d.ipynb", "line": "12", "endLine": "13", "title": "T: 1, 2"}
    assert message == "x::y\n50% done"
    assert "\n" not in line


def test_annotation_refuses_unknown_level():
    with pytest.raises(ValueError, match="error, warning or notice"):
        wc.annotation("debug", "x")


def test_group_stops_commands_in_its_body():
    body = "::error::injected\n::add-mask::secret\nplain"
    text = wc.group("passed a.ipynb", body)
    lines = text.splitlines()
    assert lines[0] == "::group::passed a.ipynb"
    assert lines[-1] == "::endgroup::"
    match = re.fullmatch(r"::stop-commands::(nbci_[0-9a-f]{32})", lines[1])
    assert match, lines[1]
    token = match.group(1)
    assert lines[2:5] == body.splitlines()
    assert lines[5] == f"::{token}::"
    assert token not in wc.group("again", body)  # a fresh token each time


def test_group_without_body_has_no_stop_commands():
    assert wc.group("x", "") == "::group::x\n::endgroup::\n"


def test_outputs_are_heredocs_that_survive_any_value(tmp_path: Path):
    path = tmp_path / "output"
    path.write_text("earlier=kept\n")
    nasty = 'line one\nEOF\nname<<EOF\n["a.ipynb", "b c.ipynb"]\n'
    wc.write_outputs(path, {"failed-notebooks": nasty, "total": "3"})
    wc.write_outputs(path, [("empty", "")])
    outputs = parse_output_file(path.read_text())
    assert outputs == {"earlier": "kept", "failed-notebooks": nasty, "total": "3", "empty": ""}


def test_heredoc_delimiters_are_random():
    first, second = wc.heredoc("a", "x"), wc.heredoc("a", "x")
    assert first != second
    assert first.startswith("a<<nbci_")


@pytest.mark.parametrize("name", ["", "a<<b", "a\nb", "a=b"])
def test_heredoc_refuses_names_the_runner_would_misread(name):
    with pytest.raises(ValueError):
        wc.heredoc(name, "x")


def test_summary_appends(tmp_path: Path):
    path = tmp_path / "summary.md"
    wc.append_summary(path, "# one\n")
    wc.append_summary(path, "two ✅\n")
    assert path.read_text(encoding="utf-8") == "# one\ntwo ✅\n"
