"""--check-outputs and --update-outputs with real kernels: fresh outputs against the committed ones."""

from __future__ import annotations

import base64
import difflib
import io
import json
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

Cell = Dict[str, Any]


def stdout(text: str) -> Dict[str, Any]:
    return new_output("stream", name="stdout", text=text)


def shown(mime: Dict[str, str]) -> Dict[str, Any]:
    return new_output("display_data", data=mime)


def raised(ename: str, evalue: str, traceback: Sequence[str] = ()) -> Dict[str, Any]:
    return new_output("error", ename=ename, evalue=evalue, traceback=list(traceback))


def cell(source: str, *outputs: Dict[str, Any], count: Optional[int] = 1, tags: Sequence[str] = ()) -> Cell:
    """A code cell as committed: ``count`` None and no outputs is a cell never run."""
    made = new_code_cell(source, execution_count=count, outputs=list(outputs))
    if tags:
        made.metadata["tags"] = list(tags)
    return made


def commit(root: Path, path: str, *cells: Cell) -> Path:
    """Write a notebook with these cells and committed outputs."""
    nb = new_notebook(cells=list(cells))
    nb.metadata.kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    target = root / path
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(target))
    return target


def check(result: dict) -> dict:
    assert result["output_check"] is not None, result
    return result["output_check"]


def differing(result: dict) -> Dict[int, List[tuple]]:
    """Cell index -> [(output, kind)] of a notebook's differences."""
    found: Dict[int, List[tuple]] = {}
    for difference in check(result)["differences"]:
        found.setdefault(difference["cell_index"], []).append((difference["output"], difference["kind"]))
    return found


def test_a_bare_off_in_the_settings_files_defaults_is_off(project):
    commit(project.root, "a.ipynb", cell("print('new')", stdout("old\n")))
    (project.root / ".nbci.yml").write_text("defaults:\n  check-outputs: off\n")
    run = project.run("run")
    assert run.code == 0, run.stderr
    assert run.result("a.ipynb")["output_check"] is None


def test_unchanged_outputs_pass_and_say_how_many_cells_were_compared(project):
    commit(project.root, "a.ipynb", cell("print('hello')", stdout("hello\n")), cell("1 + 1", new_output(
        "execute_result", data={"text/plain": "2"}, execution_count=2), count=2))
    run = project.run("run", "--check-outputs", "fail")
    assert run.code == 0, run.stderr
    result = run.result("a.ipynb")
    assert result["status"] == "passed"
    assert check(result) == {"mode": "fail", "compared": 2, "differences": [], "note": None}


def test_a_changed_output_is_changed_which_warn_lets_pass_and_fail_fails(project):
    commit(project.root, "a.ipynb", new_markdown_cell("# Title"), cell("print('new')", stdout("old\n")))
    warned = project.run("run", "--check-outputs", "warn")
    assert warned.code == 0, warned.stdout
    result = warned.result("a.ipynb")
    assert result["status"] == "changed"
    [difference] = check(result)["differences"]
    assert difference == {"cell_index": 1, "cell": "cell 2 (code cell 1)", "output": "stdout", "kind": "changed",
                          "expected": "old\n", "actual": "new\n", "line": difference["line"]}
    source_lines = (project.root / "a.ipynb").read_text().splitlines()
    assert "print('new')" in source_lines[difference["line"] - 1]
    assert warned.results["summary"]["changed"] == 1
    failed = project.run("run", "--check-outputs", "fail")
    assert failed.code == 1
    assert failed.result("a.ipynb")["status"] == "changed"
    assert failed.results["summary"]["ok"] is False


def test_nbci_check_outputs_variable_and_the_settings_file_per_glob(project):
    commit(project.root, "a.ipynb", cell("print('new')", stdout("old\n")))
    commit(project.root, "quiet/b.ipynb", cell("print('new')", stdout("old\n")))
    (project.root / ".nbci.yml").write_text('notebooks:\n  - glob: "quiet/*"\n    check-outputs: off\n')
    run = project.run("run", env={"NBCI_CHECK_OUTPUTS": "fail"})
    assert run.code == 1
    assert run.result("a.ipynb")["status"] == "changed"
    assert run.result("quiet/b.ipynb")["status"] == "passed"
    assert run.result("quiet/b.ipynb")["output_check"] is None


def test_comparison_rules_per_cell(project):
    commit(project.root, "a.ipynb",
           cell("print('never run')", count=None),  # 0: never run in the committed notebook: not compared
           cell("x = 1", stdout("was printed\n")),  # 1: output now missing
           cell("print('now printed')"),  # 2: ran without output then, prints now: extra
           cell("print('a')\nprint('b')", stdout("a\n"), stdout("b\n")),  # 3: streams coalesced
           cell("import sys\nprint('a'); print('w', file=sys.stderr); print('b')",  # 4: per stream name
                stdout("a\nb\n"), new_output("stream", name="stderr", text="w\n")),
           cell("raise ValueError('new')", raised("ValueError", "old"), tags=["raises-exception"]),  # 5
           cell("raise KeyError('same')", raised("KeyError", "'same'", ["another traceback"]),  # 6
                tags=["raises-exception"]),
           cell("from IPython.display import display\ndisplay({'text/plain': 'p'}, raw=True)",  # 7: html missing
                shown({"text/plain": "p", "text/html": "<b>p</b>"})),
           cell("from IPython.display import display\ndisplay({'text/plain': 'm'}, metadata={'k': 2}, raw=True)",
                new_output("display_data", data={"text/plain": "m"}, metadata={"k": 1}), count=42),  # 8
           cell("print('changed')", stdout("unchanged\n"), count=None),  # 9: outputs without a count: compared
           )
    run = project.run("run", "--check-outputs", "warn")
    result = run.result("a.ipynb")
    assert result["status"] == "changed", run.stdout
    assert differing(result) == {1: [("stdout", "missing")], 2: [("stdout", "extra")], 5: [("error", "changed")],
                                 7: [("text/html", "missing")], 9: [("stdout", "changed")]}
    assert check(result)["compared"] == 9
    error = [d for d in check(result)["differences"] if d["cell_index"] == 5][0]
    assert (error["expected"], error["actual"]) == ("ValueError: old", "ValueError: new")


def test_nbval_markers_and_tags(project):
    commit(project.root, "a.ipynb",
           cell("# NBVAL_IGNORE_OUTPUT\nprint(2)", stdout("1\n")),
           cell("print(2)", stdout("1\n"), tags=["nbval-ignore-output"]),
           cell("# PYTEST_VALIDATE_IGNORE_OUTPUT\nprint(2)", stdout("1\n")),
           cell("# NBVAL_SKIP\nraise ValueError('not run')", stdout("kept\n")),
           cell("raise ValueError('not run')", tags=["nbval-skip"]),
           cell("# NBVAL_RAISES_EXCEPTION\nraise ValueError('x')", raised("ValueError", "x")),
           cell("raise ValueError('y')", raised("ValueError", "y"), tags=["nbval-raises-exception"]),
           cell("# NBVAL_CHECK_OUTPUT\nprint('comment wins')", stdout("1\n"), tags=["nbval-ignore-output"]),
           cell("# NBVAL_IGNORE_OUTPUT\nprint('comment wins')", stdout("1\n"), tags=["nbval-check-output"]),
           )
    run = project.run("run", "--check-outputs", "warn")
    result = run.result("a.ipynb")
    assert result["status"] == "changed", run.stdout
    assert differing(result) == {7: [("stdout", "changed")]}
    assert check(result)["compared"] == 3  # the two that raise, and the one checked by its comment
    executed = run.executed("a.ipynb")
    assert executed.cells[3].outputs == [] and executed.cells[4].outputs == []
    assert executed.cells[6].metadata["tags"] == ["nbval-raises-exception"]  # the tag nbci used is not left behind


def test_an_nbval_marked_error_without_check_outputs_fails_as_before(project):
    commit(project.root, "a.ipynb", cell("# NBVAL_RAISES_EXCEPTION\nraise ValueError('x')", raised("ValueError", "x")))
    run = project.run("run")
    assert run.code == 1
    assert run.result("a.ipynb")["status"] == "failed"


def test_marked_scope_compares_only_cells_marked_check_output(project):
    commit(project.root, "a.ipynb",
           cell("print('new')", stdout("old\n")),
           cell("# NBVAL_CHECK_OUTPUT\nprint('new')", stdout("old\n")),
           cell("print('new')", stdout("old\n"), tags=["nbval-check-output"]))
    run = project.run("run", "--check-outputs", "warn", "--check-cells", "marked")
    result = run.result("a.ipynb")
    assert differing(result) == {1: [("stdout", "changed")], 2: [("stdout", "changed")]}
    assert check(result)["compared"] == 2


# (what the kernel prints now, the committed text differing only where a default mask applies, the
# committed text differing for real)
MASK_CASES = [
    ("<Foo object at 0x7f3a11112222>", "<Foo object at 0x55aa00001111>", "<Bar object at 0x55aa00001111>"),
    ("<Figure size 640x480 with 1 Axes>", "<Figure size 432x288 with 1 Axes>", "<Figure size 432x288 with 2 Axes>"),
    ("done 2024-01-02T03:04:05.123456+00:00", "done 2023-11-12T13:14:15.000001+00:00",
     "failed 2023-11-12T13:14:15.000001+00:00"),
    ("on 2024-01-02", "on 2023-05-06", "off 2023-05-06"),
    ("at 03:04:05", "at 11:12:13", "by 11:12:13"),
    ("datetime.datetime(2024, 1, 2, 3, 4, 5)", "datetime.datetime(2023, 5, 6, 7, 8, 9)", "datetime.date(2023, 5, 6)"),
    ("start datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)",
     "start datetime.datetime(2023, 5, 6, 7, 8, 9, tzinfo=zoneinfo.ZoneInfo(key='Europe/Paris'))",
     "stop datetime.datetime(2023, 5, 6, 7, 8, 9, tzinfo=zoneinfo.ZoneInfo(key='Europe/Paris'))"),
    ("datetime.time(3, 4, tzinfo=datetime.timezone(datetime.timedelta(seconds=3600)), fold=1) ok",
     "datetime.time(5, 6, tzinfo=<UTC>) ok", "datetime.time(5, 6, tzinfo=<UTC>) not ok"),
    ("id 3f2b8c1e-1d2a-4c3b-9e8f-0123456789ab", "id 00000000-1111-4222-8333-444444444444",
     "key 00000000-1111-4222-8333-444444444444"),
    ("\x1b[31mred\x1b[0m", "red", "\x1b[31mblue\x1b[0m"),
    ("x 10%\rx 100%", "x 100%", "x 90%"),
    ("100%|#####| 10/10 [00:01<00:00,  9.50it/s]", "100%|#####| 10/10 [00:02<00:00,  4.20it/s]",
     "100%|#####| 9/10 [00:02<00:00,  4.20it/s]"),
    ("value   \nnext", "value\r\nnext", "value\r\nlast"),
    ("CPU times: user 1 ms, sys: 0 ns\nWall time: 2.1 ms", "CPU times: user 5 ms, sys: 1 ms\nWall time: 9 ms",
     "CPU times: user 5 ms, sys: 1 ms\nWall time: 9 ms\nextra"),
]


def mask_notebook(root: Path) -> None:
    """Two cells per default mask: committed noise (even indexes) and a real difference (odd ones)."""
    cells = []
    for fresh, noise, real in MASK_CASES:
        code = f"from IPython.display import display\ndisplay({{'text/plain': {fresh!r}}}, raw=True)"
        cells += [cell(code, shown({"text/plain": noise})), cell(code, shown({"text/plain": real}))]
    commit(root, "masks.ipynb", *cells)


def test_each_default_mask_removes_its_noise_and_hides_no_real_difference(project):
    mask_notebook(project.root)
    result = project.run("run", "--check-outputs", "warn").result("masks.ipynb")
    assert sorted(differing(result)) == [2 * i + 1 for i in range(len(MASK_CASES))]
    unmasked = project.run("run", "--check-outputs", "warn", "--default-masks", "false").result("masks.ipynb")
    assert sorted(differing(unmasked)) == list(range(2 * len(MASK_CASES)))


def test_a_moved_date_hidden_by_the_default_masks_is_found_with_default_masks_off_for_its_glob(project):
    for path in ("calendar/due.ipynb", "log.ipynb"):
        commit(project.root, path, cell("print('due 2024-01-03')", stdout("due 2024-01-02\n")))
    masked = project.run("run", "--check-outputs", "fail")
    assert masked.code == 0 and masked.result("calendar/due.ipynb")["status"] == "passed"  # the caveat
    (project.root / ".nbci.yml").write_text('notebooks:\n  - glob: "calendar/*.ipynb"\n    default-masks: false\n')
    own = project.run("run", "--check-outputs", "fail")
    assert own.code == 1 and own.result("log.ipynb")["status"] == "passed"  # other notebooks keep the masks
    [difference] = check(own.result("calendar/due.ipynb"))["differences"]
    assert (difference["expected"], difference["actual"]) == ("due 2024-01-02\n", "due 2024-01-03\n")
    (project.root / ".nbci.yml").write_text('notebooks:\n  - glob: "calendar/*.ipynb"\n    default-masks: "no"\n')
    bad = project.run("run", "--check-outputs", "fail")
    assert bad.code == 2 and "default-masks must be true or false" in bad.stderr


def test_nbval_sanitize_file_and_settings_file_masks(project):
    commit(project.root, "a.ipynb", cell("print('5 rows in 0.25 s')", stdout("3 rows in 0.5 s\n")))
    commit(project.root, "b.ipynb", cell("print('5 rows in 0.25 s')", stdout("3 rows in 0.5 s\n")))
    (project.root / "sanitize.cfg").write_text("[rows]\nregex: \\d+ rows\nreplace: N rows\n")
    (project.root / ".nbci.yml").write_text(
        'notebooks:\n  - glob: "a.ipynb"\n    output-masks:\n      - {regex: "in [0-9.]+ s", replace: "in T s"}\n')
    plain = project.run("run", "--check-outputs", "warn")
    assert [plain.result(p)["status"] for p in ("a.ipynb", "b.ipynb")] == ["changed", "changed"]
    sanitized = project.run("run", "--check-outputs", "warn", "--nbval-sanitize-with", "sanitize.cfg")
    assert sanitized.result("a.ipynb")["status"] == "passed"
    [difference] = check(sanitized.result("b.ipynb"))["differences"]
    assert (difference["expected"], difference["actual"]) == ("N rows in 0.5 s\n", "N rows in 0.25 s\n")


def test_sanitize_file_masks_that_backtrack_forever_fail_their_notebook_only(project):
    commit(project.root, "slow.ipynb", cell("print('a' * 40 + '!')", stdout("x\n")))
    commit(project.root, "plain.ipynb", cell("1 + 1", new_output("execute_result", data={"text/plain": "2"},
                                                                 execution_count=1)))
    (project.root / "sanitize.cfg").write_text("[slow]\nregex: (a+)+$\nreplace: A\n")
    run = project.run("run", "--check-outputs", "warn", "--nbval-sanitize-with", "sanitize.cfg")
    assert run.code == 1
    slow = run.result("slow.ipynb")
    assert (slow["status"], slow["error"]["ename"]) == ("failed", "OutputMasksTooSlow")
    assert "--nbval-sanitize-with" in slow["error"]["evalue"]
    assert run.result("plain.ipynb")["status"] == "passed"


def test_a_mask_that_is_not_a_regular_expression_is_a_usage_error(project):
    commit(project.root, "a.ipynb", cell("print(1)", stdout("1\n")))
    (project.root / ".nbci.yml").write_text('defaults:\n  output-masks:\n    - {regex: "(", replace: ""}\n')
    run = project.run("run", "--check-outputs", "warn")
    assert run.code == 2
    assert ".nbci.yml:3" in run.stderr and "not a valid regular expression" in run.stderr


def png(shade: int) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (shade, shade, shade)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_images_are_not_compared_unless_a_tolerance_is_given(project):
    pytest.importorskip("PIL")
    show = "from IPython.display import display\ndisplay({{'image/png': {!r}, 'text/plain': 'img'}}, raw=True)"
    commit(project.root, "a.ipynb",
           cell(show.format(png(100)), shown({"image/png": png(101), "text/plain": "img"})),  # 1 level off
           cell(show.format(png(100)), shown({"image/png": png(200), "text/plain": "img"})))  # far off
    default = project.run("run", "--check-outputs", "fail")
    assert default.code == 0, default.stdout
    assert check(default.result("a.ipynb"))["compared"] == 2
    tolerant = project.run("run", "--check-outputs", "fail", "--image-tolerance", "5")
    assert tolerant.code == 1
    assert differing(tolerant.result("a.ipynb")) == {1: [("image/png", "changed")]}
    [difference] = check(tolerant.result("a.ipynb"))["differences"]
    assert difference["expected"] == "[image 8x8]"
    assert difference["actual"] == "[image 8x8]: RMS difference 86.6 (tolerance 5)"
    exact = project.run("run", "--check-outputs", "fail", "--image-tolerance", "0")
    assert differing(exact.result("a.ipynb")) == {0: [("image/png", "changed")], 1: [("image/png", "changed")]}


def test_no_committed_outputs_says_nothing_to_compare(project):
    project.write("a.ipynb", "print(1)")
    run = project.run("run", "--check-outputs", "fail")
    assert run.code == 0
    result = run.result("a.ipynb")
    assert result["status"] == "passed"
    assert check(result)["note"].startswith("nothing to compare")
    assert check(result)["compared"] == 0


def test_a_failing_notebook_fails_and_is_not_compared(project):
    commit(project.root, "a.ipynb", cell("print('new')", stdout("old\n")), cell("1/0", stdout("x\n")))
    run = project.run("run", "--check-outputs", "warn")
    assert run.code == 1
    assert run.result("a.ipynb")["status"] == "failed"
    assert run.result("a.ipynb")["output_check"] is None


def test_a_cached_notebook_keeps_its_verdict_and_committed_outputs_are_in_the_key(project):
    path = commit(project.root, "a.ipynb", cell("print('new')", stdout("old\n")))
    args = ("run", "--cache-dir", "nbci-cache", "--check-outputs", "fail")
    first = project.run(*args)
    assert first.result("a.ipynb")["status"] == "changed"
    again = project.run(*args)
    assert again.code == 1
    result = again.result("a.ipynb")
    assert result["status"] == "changed" and result["cached_from"] is not None
    assert differing(result) == {0: [("stdout", "changed")]}
    commit(project.root, "a.ipynb", cell("print('new')", stdout("new\n")))
    fixed = project.run(*args)
    assert fixed.code == 0
    assert fixed.result("a.ipynb")["status"] == "passed" and fixed.result("a.ipynb")["cached_from"] is None
    assert path.exists()


def test_check_outputs_mode_is_part_of_the_cache_key(project):
    commit(project.root, "a.ipynb", cell("print('new')", stdout("old\n")))
    assert project.run("run", "--cache-dir", "nbci-cache").result("a.ipynb")["status"] == "passed"
    checked = project.run("run", "--cache-dir", "nbci-cache", "--check-outputs", "warn")
    assert checked.result("a.ipynb")["status"] == "changed"


def indented(nb_text: str) -> str:
    """A notebook file as another tool might write it: two-space indentation, keys not sorted, no last newline."""
    data = json.loads(nb_text)
    data = {"metadata": data["metadata"], "cells": data["cells"], "nbformat_minor": data["nbformat_minor"],
            "nbformat": data["nbformat"]}
    return json.dumps(data, indent=2, ensure_ascii=False)


def test_update_outputs_leaves_an_unchanged_notebook_byte_identical(project):
    path = commit(project.root, "a.ipynb", cell("print('same é')", stdout("same é\n")),
                  cell("class Foo: pass\nFoo()", new_output(
                      "execute_result", data={"text/plain": "<__main__.Foo at 0x7f0000001234>"}, execution_count=7),
                      count=7))
    path.write_text(indented(path.read_text(encoding="utf-8")), encoding="utf-8")
    before = path.read_bytes()
    run = project.run("run", "--update-outputs")
    assert run.code == 0, run.stdout
    assert path.read_bytes() == before


def test_update_outputs_writes_only_the_changed_outputs(project):
    path = commit(project.root, "a.ipynb", new_markdown_cell("Intro"), cell("print('new')", stdout("old\n")),
                  cell("print('same')", stdout("same\n")))
    path.write_text(indented(path.read_text(encoding="utf-8")), encoding="utf-8")
    failing = commit(project.root, "b.ipynb", cell("print('new')", stdout("old\n")), cell("1/0"))
    before, failing_before = path.read_text(encoding="utf-8"), failing.read_bytes()
    run = project.run("run", "--update-outputs", "--check-outputs", "warn")
    assert run.code == 1
    assert run.result("a.ipynb")["status"] == "changed"
    after = path.read_text(encoding="utf-8")
    changed = [line for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
               if line[:1] in "+-" and line[:3] not in ("+++", "---")]
    assert changed == ['-' + ' ' * 12 + '"old\\n"', '+' + ' ' * 12 + '"new\\n"']
    assert not after.endswith("\n")
    assert failing.read_bytes() == failing_before
    assert project.run("run", "--check-outputs", "fail", "a.ipynb").code == 0


def test_update_outputs_keeps_another_tools_layout_and_string_sources(project):
    path = commit(project.root, "a.ipynb", cell("print('new')\nx = {'k': [1]}", stdout("old\n")),
                  cell("print('é same')", stdout("é same\n")))
    data = json.loads(path.read_text(encoding="utf-8"))
    data["metadata"]["tool"] = {"float": 1.5, "empty": [], "none": {}}
    for code in data["cells"]:
        code["source"] = "".join(code["source"])  # one string, not nbformat's list of lines
        code["outputs"][0] = {"text": "".join(code["outputs"][0]["text"]), "output_type": "stream", "name": "stdout"}
    before = json.dumps({key: data[key] for key in ("nbformat", "nbformat_minor", "metadata", "cells")}, indent=2,
                        ensure_ascii=False) + "\n"
    path.write_text(before, encoding="utf-8")
    assert project.run("run", "--update-outputs").code == 0
    after = path.read_text(encoding="utf-8")
    changed = [line for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
               if line[:1] in "+-" and line[:3] not in ("+++", "---")]
    assert changed == ['-' + ' ' * 10 + '"text": "old\\n",', '+' + ' ' * 10 + '"text": "new\\n",']


HAND_WRITTEN = """{"cells": [
    {"cell_type": "code", "execution_count": 1, "id": "a1", "metadata": {"w": 1e3, "u": "http:\\/\\/x"},
     "outputs": [{"name": "stdout", "output_type": "stream", "text": "old\\n"}],
     "source": "print('new')"},
  {"cell_type": "code", "execution_count": 2, "id": "b2", "metadata": { }, "outputs": [ ], "source": "x = 1"}
 ],
 "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
              "ratio": 1.50, "name": "caf\\u00e9 \u00e9"},
 "nbformat": 4, "nbformat_minor": 5}"""


def test_update_outputs_rewrites_only_the_changed_values_of_a_hand_written_file(project):
    path = project.root / "a.ipynb"
    path.write_text(HAND_WRITTEN, encoding="utf-8")
    assert project.run("run", "--update-outputs").code == 0
    after = path.read_text(encoding="utf-8")
    head, tail = HAND_WRITTEN.split('"outputs": [{')[0], HAND_WRITTEN.split('"old\\n"}],')[1]
    assert after.startswith(head + '"outputs": [') and after.endswith("]," + tail)
    assert json.loads(after)["cells"][0]["outputs"] == [{"name": "stdout", "output_type": "stream", "text": "new\n"}]
    assert list(json.loads(after)["cells"][0]["outputs"][0]) == ["name", "output_type", "text"]


@pytest.mark.parametrize("layout", [{"indent": 1}, {"indent": 4}, {"indent": "\t"}, {"separators": (",", ":")}, {}])
def test_a_notebook_file_is_written_back_in_its_own_json_layout(layout):
    from nbci.notebook_json import json_like

    data = {"cells": [{"source": "x", "outputs": [], "metadata": {}}], "metadata": {"é": 1.5}, "nbformat": 4}
    for ending in ("", "\n"):
        original = json.dumps(data, ensure_ascii=False, **layout) + ending
        assert json_like(json.loads(original), original) == original


def test_update_outputs_keeps_windows_line_ends_and_the_file_mode(project):
    path = commit(project.root, "a.ipynb", cell("print('new')", stdout("old\n")), cell("print(1)", stdout("1\n")))
    path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    path.chmod(0o755)
    before = path.read_bytes()
    assert project.run("run", "--update-outputs").code == 0
    after = path.read_bytes()
    assert after.count(b"\r\n") == after.count(b"\n") == before.count(b"\n")
    assert after.replace(b'"new\\n"', b'"old\\n"') == before
    assert path.stat().st_mode & 0o777 == 0o755


def test_update_outputs_keeps_cells_nbval_skips(project):
    path = commit(project.root, "a.ipynb", cell("# NBVAL_SKIP\nraise ValueError", stdout("kept\n")),
                  cell("print('new')", stdout("old\n")))
    run = project.run("run", "--update-outputs")
    assert run.code == 0, run.stdout
    nb = nbformat.read(str(path), as_version=4)
    assert [c.outputs[0]["text"] for c in nb.cells] == ["kept\n", "new\n"]


@pytest.mark.parametrize("other", [["--inplace"], ["-p", "rows", "5"]])
def test_update_outputs_refuses_options_that_make_no_sense_with_it(project, other):
    project.write("a.ipynb", "print(1)")
    run = project.run("run", "--update-outputs", *other)
    assert run.code == 2
    assert len(run.stderr.strip().splitlines()) == 1 and "--update-outputs" in run.stderr


def test_update_outputs_and_sanitize_files_cannot_come_from_the_settings_file(project):
    project.write("a.ipynb", "print(1)")
    (project.root / ".nbci.yml").write_text("defaults:\n  update-outputs: true\n")
    run = project.run("run")
    assert run.code == 2 and "update-outputs cannot be set in the settings file" in run.stderr


def test_settings_file_masks_that_backtrack_forever_fail_their_notebook_only(project):
    commit(project.root, "slow.ipynb", cell("print('a' * 40 + '!')", stdout("x\n")))
    commit(project.root, "other.ipynb", cell("print('same')", stdout("same\n")))
    (project.root / ".nbci.yml").write_text(
        'notebooks:\n  - glob: "slow.ipynb"\n    output-masks:\n      - {regex: "(a+)+$", replace: ""}\n')
    run = project.run("run", "--check-outputs", "warn")
    assert run.code == 1
    slow = run.result("slow.ipynb")
    assert (slow["status"], slow["error"]["ename"]) == ("failed", "OutputMasksTooSlow")
    assert run.result("other.ipynb")["status"] == "passed"


NBVAL_SAMPLES = Path(__file__).parent / "notebooks" / "nbval"


def nbval_failures(folder: Path, names: List[str]) -> set:
    """The notebooks ``pytest --nbval`` fails in ``folder`` (run in a child process, as users run it)."""
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-m", "pytest", "--nbval", "-p", "no:cacheprovider", "-rA", "-q", *names],
                         cwd=folder, capture_output=True, text=True, timeout=240)
    assert run.returncode in (0, 1), run.stdout + run.stderr
    return {line.split()[1].split("::")[0] for line in run.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))}


def test_nbvals_own_samples_get_nbvals_verdicts(project):
    pytest.importorskip("nbval")
    names = sorted(path.name for path in NBVAL_SAMPLES.glob("*.ipynb"))
    for name in names:
        project.add(f"nbval/{name}", name)
    failed_by_nbval = nbval_failures(project.root, names)
    run = project.run("run", "--check-outputs", "fail", *names)
    verdicts = {name: run.result(name)["status"] for name in names}
    assert {name for name, status in verdicts.items() if status != "passed"} == failed_by_nbval, verdicts
    assert 0 < len(failed_by_nbval) < len(names)


def test_differences_are_listed_up_to_a_hundred_and_the_rest_counted(project):
    commit(project.root, "a.ipynb", *[cell(f"print({i})", stdout("old\n")) for i in range(105)])
    result = project.run("run", "--check-outputs", "warn").result("a.ipynb")
    assert len(check(result)["differences"]) == 100
    assert check(result)["note"] == "5 more differing outputs not listed"
    assert check(result)["compared"] == 105


def test_outputs_made_to_make_masks_backtrack_are_compared_in_linear_time(project):
    commit(project.root, "a.ipynb",
           cell("print(' ' * 2_000_000 + 'x')", stdout("x\n")),  # trailing-whitespace mask, run not at a line end
           cell("print('a' * 1_000_000 + '\\b' * 1_000_000)", stdout("x\n")),  # nbval's backspace passes
           cell("print('\\x1b[' + ';' * 2_000_000)", stdout("x\n")))
    run = project.run("run", "--check-outputs", "warn")
    assert run.code == 0, run.stderr
    assert sorted(differing(run.result("a.ipynb"))) == [0, 1, 2]


def test_write_source_replaces_only_the_unchanged_regular_file_it_read(tmp_path):
    from nbci.outputs import SourceNotWritten, write_source

    root, outside = tmp_path / "repo", tmp_path / "outside.ipynb"
    (root / "sub").mkdir(parents=True)
    outside.write_text("was")
    path = root / "sub" / "a.ipynb"
    path.write_text("was")
    path.chmod(0o751)
    write_source(root, "sub/a.ipynb", "was", "new \udc80")
    assert path.read_text() == "new \\udc80" and path.stat().st_mode & 0o777 == 0o751
    refused = {
        "edited.ipynb": lambda p: p.write_text("edited after it was read"),
        "out.ipynb": lambda p: p.symlink_to(outside),
        "in.ipynb": lambda p: p.symlink_to(root / "sub" / "a.ipynb"),
        "fifo.ipynb": lambda p: os.mkfifo(p),
        "linked/a.ipynb": lambda p: p.parent.rmdir() or p.parent.symlink_to(tmp_path),
    }
    for name, make in refused.items():
        target = root / name
        target.parent.mkdir(exist_ok=True)
        make(target)
        with pytest.raises(SourceNotWritten, match="outputs not updated"):
            write_source(root, name, "was", "new")
    assert outside.read_text() == "was" and (root / "edited.ipynb").read_text() == "edited after it was read"
    assert path.read_text() == "new \\udc80"
    assert not [p for p in root.rglob("*") if p.name.endswith(".nbci-tmp")]


def test_a_masked_secret_at_a_diffs_cut_leaves_none_of_itself(project):
    secret = "s3cr3t-" + "k" * 30
    lines = "import os\nprint('x' * 3990 + ' ' + os.environ['DB_CONN'] + ' tail')"
    commit(project.root, "a.ipynb", cell(lines, stdout("x\n")))
    run = project.run("run", "--check-outputs", "warn", "--mask-env", "DB_CONN", env={"DB_CONN": secret})
    [difference] = check(run.result("a.ipynb"))["differences"]
    assert difference["actual"] == "x" * 3990 + " … [43 more characters]"
    reports = [run.stdout, run.stderr] + [p.read_text(encoding="utf-8", errors="replace")
                                          for p in run.output_dir.rglob("*") if p.is_file()]
    assert [report for report in reports if secret[:5] in report] == []


def test_update_outputs_keeps_an_edit_saved_while_the_notebook_ran(project):
    edit = ("import json\nnb = json.load(open('a.ipynb'))\nnb['metadata']['saved'] = 'while running'\n"
            "json.dump(nb, open('a.ipynb', 'w'))")
    path = commit(project.root, "a.ipynb", cell("print('new')", stdout("old\n")), cell(edit))
    run = project.run("run", "--update-outputs")
    assert json.loads(path.read_text())["metadata"]["saved"] == "while running"
    assert "changed during the run; outputs not updated; run again" in " ".join(run.result("a.ipynb")["warnings"])


def test_update_outputs_does_not_write_through_a_link_the_notebook_made(project, tmp_path):
    outside = tmp_path / "outside.ipynb"
    relink = f"import os\nos.replace('a.ipynb', 'moved.ipynb')\nos.symlink({str(outside)!r}, 'a.ipynb')"
    path = commit(project.root, "a.ipynb", cell("print('new')", stdout("old\n")), cell(relink))
    outside.write_bytes(path.read_bytes())
    before = outside.read_bytes()
    run = project.run("run", "--update-outputs")
    assert outside.read_bytes() == before
    assert "outputs not updated" in " ".join(run.result("a.ipynb")["warnings"])
