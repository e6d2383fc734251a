"""Workflow-command escaping and environment files, read back the way the runner reads them."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Dict, List, Tuple

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nbci.report import workflow_commands as wc
from runner_log import live_commands, parse


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
    assert message == "x:\u200b:y\n50% done"  # shown the same, but no lax parser ends the message there
    assert "\n" not in line and line.count("::") == 2


def test_annotation_refuses_unknown_level():
    with pytest.raises(ValueError, match="error, warning or notice"):
        wc.annotation("debug", "x")


def github_log() -> Tuple[io.StringIO, wc.CommandLog]:
    stream = io.StringIO()
    log = wc.CommandLog(stream, github=True)
    log.open()
    return stream, log


def test_text_in_the_log_is_never_a_command():
    stream, log = github_log()
    log.write("::error::injected\n  ::add-mask::secret\nok ##[warning]old form\n")
    log.group("a\n::error::title.ipynb ##[error]x", "::error::in group\n##[set-output name=x]y")
    log.commands([wc.annotation("error", "real one")])
    log.close()
    live = live_commands(stream.getvalue())
    assert [(c.name, c.data) for c in live] == [("group", "a\\n:\u200b:error:\u200b:title.ipynb ##\u200b[error]x"),
                                               ("endgroup", ""), ("error", "real one")]
    assert "::add-mask::secret" in stream.getvalue()  # shown, not obeyed
    assert stream.getvalue().endswith(f"::{log.token}::\n")  # commands work again after nbci


def test_each_log_has_its_own_token():
    assert wc.CommandLog(io.StringIO()).token != wc.CommandLog(io.StringIO()).token


def test_without_github_the_log_has_no_stop_lines():
    stream = io.StringIO()
    log = wc.CommandLog(stream)
    log.open()
    log.group("x", "")
    log.close()
    assert stream.getvalue() == "::group::x\n::endgroup::\n"


@given(st.text())
def test_one_line_never_breaks_a_line_and_never_holds_the_old_form(text: str):
    line = wc.one_line(text)
    assert len(line.splitlines()) <= 1 and "##[" not in line and "::" not in line
    assert parse(line) is None


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


def test_nbcis_own_error_lines_carry_no_terminal_controls_from_a_name(project) -> None:
    """A file name in nbci's own one-line messages: no hyperlink, hidden text or carriage return reaches the log."""
    name = "nope\x1b]8;;http://evil/\x07x\x1b[8m\r.ipynb"
    run = project.run("run", name)
    assert run.code == 2 and "nbci: error: no notebooks match nopex\\r.ipynb" in run.stderr
    assert not re.search("[\x1b\x07\x9b\r]", run.stderr)
    assert wc.one_line("a\x1b[31mred\x1b[0m \x9b2J") == "ared \\x9b2J"
    assert wc.one_line("bidi\u202egpj.exe\x7f") == "bidi\\u202egpj.exe\\x7f"
