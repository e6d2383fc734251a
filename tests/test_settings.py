"""``.nbci.yml``: run defaults, per-notebook settings by glob, and one-line errors with the line."""

from __future__ import annotations

import json
import os

import pytest
from conftest import Project


def settings(project: Project, text: str) -> None:
    (project.root / ".nbci.yml").write_text(text, encoding="utf-8")


def test_per_glob_timeout_skip_and_cwd_root(project: Project) -> None:
    project.write("heavy/slow.ipynb", "import time\ntime.sleep(30)")
    project.write("gpu/train.ipynb", "raise SystemError('never run')")
    project.write("sub/where.ipynb", "import os\nprint(os.getcwd())")
    project.write("sub/here.ipynb", "import os\nprint(os.getcwd())")
    settings(project, """\
defaults:
  timeout: 300
notebooks:
  - glob: "heavy/*.ipynb"
    notebook-timeout: 1
  - glob: "gpu/**"
    skip: needs a GPU
  - glob: "sub/where.ipynb"
    cwd: root
""")
    run = project.run("run")
    assert run.code == 1, run.stderr
    statuses = {nb["path"]: nb["status"] for nb in run.results["notebooks"]}
    assert statuses == {"gpu/train.ipynb": "skipped", "heavy/slow.ipynb": "notebook-timeout",
                        "sub/here.ipynb": "passed", "sub/where.ipynb": "passed"}
    assert run.result("gpu/train.ipynb")["skip_reason"] == "needs a GPU"
    assert not (run.output_dir / "gpu" / "train.ipynb").exists()
    assert run.executed("sub/where.ipynb").cells[0].outputs[0]["text"] == f"{project.root.resolve()}\n"
    assert run.executed("sub/here.ipynb").cells[0].outputs[0]["text"] == f"{(project.root / 'sub').resolve()}\n"
    assert "SKIPPED          gpu/train.ipynb (needs a GPU)" in run.stdout
    summary = run.results["summary"]
    assert summary["skipped"] == 1 and summary["passed"] == 2 and summary["failed"] == 1
    junit = (run.output_dir / "junit.xml").read_text(encoding="utf-8")
    assert 'skipped="1"' in junit and '<skipped message="needs a GPU"' in junit
    listed = project.run("list")
    assert "gpu/train.ipynb  (skipped: needs a GPU)" in listed.stdout.splitlines()


def test_skipped_alone_is_a_passing_run_and_later_entries_win(project: Project) -> None:
    project.write("a.ipynb", "1")
    project.write("b.ipynb", "raise ValueError('no')")
    settings(project, 'notebooks:\n  - glob: "*.ipynb"\n    skip: later entries win\n'
                      '  - glob: "b.ipynb"\n    skip: not today\n')
    run = project.run("run")
    assert run.code == 0, run.stderr
    assert [nb["skip_reason"] for nb in run.results["notebooks"]] == ["later entries win", "not today"]


def test_command_line_overrides_the_file_defaults(project: Project) -> None:
    project.write("a.ipynb", "import time\ntime.sleep(3)")
    settings(project, "defaults:\n  timeout: 1\n  jobs: 1\n")
    assert project.run("run").result("a.ipynb")["status"] == "timeout"
    assert project.run("run", "--timeout", "60").result("a.ipynb")["status"] == "passed"
    assert project.run("run", env={"NBCI_TIMEOUT": "60"}).result("a.ipynb")["status"] == "passed"


def test_config_option_names_another_file(project: Project) -> None:
    project.write("a.ipynb", "1")
    project.write("b.ipynb", "1")
    (project.root / "ci.yml").write_text('notebooks:\n  - glob: "a.ipynb"\n    skip: elsewhere\n')
    run = project.run("run", "--config", "ci.yml")
    assert [nb["status"] for nb in run.results["notebooks"]] == ["skipped", "passed"]
    missing = project.run("run", "--config", "nope.yml")
    assert missing.code == 2 and "--config nope.yml: no such file" in missing.stderr


@pytest.mark.parametrize("text, message", [
    ("defaults:\n  timeout: [1\n", ".nbci.yml:3: not valid YAML"),
    ("defaults:\n  timeout: 5\n  colour: red\n", ".nbci.yml:3: unknown option 'colour' in defaults: use one of"),
    ("notebooks:\n  - glob: a.ipynb\n    timout: 5\n", ".nbci.yml:3: unknown key 'timout' in a notebooks entry: use glob, timeout"),
    ("notebooks:\n  - skip: why\n", ".nbci.yml:2: a notebooks entry needs 'glob'"),
    ("notebooks:\n  - glob: a.ipynb\n    cwd: ../elsewhere\n", ".nbci.yml:3: cwd '../elsewhere' must stay inside the working directory"),
    ("notebooks:\n  - glob: a.ipynb\n    retries: many\n", ".nbci.yml:3: retries must be a whole number"),
    ("defaults:\n  timeout: soon\n", ".nbci.yml:2: defaults timeout:"),
    ("jobs: 2\n", ".nbci.yml:1: unknown key 'jobs': the file holds 'defaults' and 'notebooks'"),
    ("notebooks: {glob: a}\n", ".nbci.yml:1: notebooks must be a list"),
    ("defaults:\n  junit: /tmp/elsewhere.xml\n", ".nbci.yml:2: junit cannot be set in the settings file"),
    ("defaults:\n  output-dir: ../out\n", ".nbci.yml:2: output-dir cannot be set in the settings file"),
    ("defaults:\n  retry-on: (a+)+$\n", ".nbci.yml:2: retry-on cannot be set in the settings file"),
    ("notebooks:\n  - glob: a.ipynb\n    parameters: {'x = 1; y': 2}\n", "parameter name 'x = 1; y' is not a Python variable name"),
    # what a pull request may put there: each is the file's mistake, never nbci's (exit 3)
    ("defaults: &d\n  timeout: 5\nnotebooks:\n  - glob: a.ipynb\n    parameters: {x: *d}\n",
     ".nbci.yml:5: YAML aliases (*name) are not allowed"),
    ("defaults: &a\n  x: *a\n", ".nbci.yml:2: YAML aliases"),
    ("notebooks:\n  - glob: !!python/object/apply:os.system [echo hi]\n",
     ".nbci.yml:2: cannot read this value (could not determine a constructor"),
    ("notebooks:\n  - glob: a.ipynb\n    parameters: {? [1]: 2}\n", ".nbci.yml:3: cannot read this value (found unhashable key)"),
    ("notebooks:\n  - glob: a.ipynb\n    parameters: {x: !!binary 'not base64!'}\n", ".nbci.yml:3: cannot read this value"),
    ("notebooks:\n  - glob: a.ipynb\n    retries: " + "9" * 5000 + "\n", ".nbci.yml:3: cannot read this value"),
    ("notebooks:\n  - glob: a.ipynb\n    notebook-timeout: .inf\n", ".nbci.yml:3: notebook-timeout must be a number"),
    ("notebooks:\n  - glob: a.ipynb\n    timeout: .nan\n", ".nbci.yml:3: timeout must be a number"),
    ("notebooks:\n  - glob: a.ipynb\n    parameters: {x: " + "[" * 5000 + "]" * 5000 + "}\n",
     ".nbci.yml:3: nested more than 32 levels deep"),
    ("defaults:\n  cache-inputs: [data/*.csv, /etc/*]\n", ".nbci.yml:2: cache-inputs '/etc/*' must stay inside"),
    ("defaults:\n  cache-inputs: ../secrets\n", ".nbci.yml:2: cache-inputs '../secrets' must stay inside"),
    ("defaults:\n  cache-inputs: [a/**/**/**/b]\n", ".nbci.yml:2: cache-inputs 'a/**/**/**/b' has more than 2 '**'"),
    ("notebooks:\n" + "  - {glob: a.ipynb, skip: x}\n" * 3000 + "  - {glob: a.ipynb, skip: y}\n",
     ".nbci.yml:2001: more than 10000 values in a settings file"),
    ("defaults:\n  parameters: {x: !!set {a: null}}\n", ".nbci.yml:2: set values (from a YAML !!tag) are not allowed"),
    ("defaults:\n  kernel: !!binary aGk=\n", ".nbci.yml:2: bytes values (from a YAML !!tag) are not allowed"),
])
def test_a_bad_settings_file_is_one_line_with_its_line_number(project: Project, text: str, message: str) -> None:
    project.write("a.ipynb", "1")
    settings(project, text)
    for command in ("run", "list"):
        run = project.run(command)
        assert run.code == 2, run.stdout
        lines = run.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("nbci: error: ") and message in lines[0], run.stderr
    assert not (project.root / "nbci-output").exists()


def test_cwd_option_and_a_missing_cwd_folder(project: Project) -> None:
    project.write("sub/a.ipynb", "import os\nprint(os.getcwd())")
    (project.root / "data").mkdir()
    run = project.run("run", "--cwd", "data")
    assert run.executed("sub/a.ipynb").cells[0].outputs[0]["text"] == f"{(project.root / 'data').resolve()}\n"
    missing = project.run("run", "--cwd", "nowhere")
    result = missing.result("sub/a.ipynb")
    assert result["status"] == "invalid" and "cwd nowhere is not a folder" in result["error"]["evalue"]
    assert json.loads((missing.output_dir / "results.json").read_text())["summary"]["failed"] == 1


def test_a_billion_laughs_is_refused_before_it_grows(project: Project) -> None:
    project.write("a.ipynb", "1")
    laughs = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    laughs += [f"{chr(98 + i)}: &{chr(98 + i)} [{','.join([f'*{chr(97 + i)}'] * 9)}]" for i in range(8)]
    settings(project, "\n".join(laughs) + "\n")  # 9**9 strings, were it expanded
    run = project.run("list")
    assert run.code == 2 and run.stderr.splitlines() == [f"nbci: error: {project.root / '.nbci.yml'}:2: YAML aliases "
                                                         "(*name) are not allowed in a settings file: write the value out"]


def test_a_settings_file_nbci_will_not_read_is_refused_in_one_line(project: Project, tmp_path) -> None:
    project.write("a.ipynb", "1")
    secret = tmp_path / "secret.yml"
    secret.write_text("secret-token: 1234\n", encoding="utf-8")
    (project.root / ".nbci.yml").symlink_to(secret)
    run = project.run("list")
    assert run.code == 2 and "secret-token" not in run.stderr, run.stderr
    assert run.stderr.splitlines() == [f"nbci: error: {project.root / '.nbci.yml'}: nbci does not read this settings "
                                       f"file: it is a link to {secret}, outside the working directory: nbci reads "
                                       "only files inside it"]
    (project.root / ".nbci.yml").unlink()
    os.mkfifo(project.root / ".nbci.yml")  # opened without blocking, and refused: no writer ever comes
    for args in ((), ("--config", ".nbci.yml")):
        run = project.run("list", *args)
        assert run.code == 2 and "it is not a regular file" in run.stderr and len(run.stderr.splitlines()) == 1


@pytest.mark.parametrize("data, message", [
    (b"# " + b"x" * (11 * 2**20), ".nbci.yml: over 1024 KiB, too big for a settings file"),
    (b"defaults:\n  kernel: caf\xe9\n", ".nbci.yml:2: not UTF-8 text: save the file as UTF-8"),
])
def test_a_huge_or_binary_settings_file_is_one_line(project: Project, data: bytes, message: str) -> None:
    project.write("a.ipynb", "1")
    (project.root / ".nbci.yml").write_bytes(data)
    run = project.run("list")
    assert run.code == 2 and len(run.stderr.splitlines()) == 1 and message in run.stderr, run.stderr


def test_values_quoted_in_errors_are_kept_short(project: Project) -> None:
    project.write("a.ipynb", "1")
    settings(project, f"notebooks:\n  - glob: a.ipynb\n    ? {'k' * 5000}\n    : 1\n")
    run = project.run("list")
    assert run.code == 2 and "unknown key 'kkkkkkkkkkkk" in run.stderr and len(run.stderr) < 400, run.stderr[:400]
    settings(project, f"notebooks:\n  - glob: a.ipynb\n    skip: [{'x' * 5000}]\n")
    run = project.run("list")
    assert run.code == 2 and "skip must be text, not ['xxxxx" in run.stderr and len(run.stderr) < 300, run.stderr[:300]


def test_cache_inputs_outside_the_working_directory_are_a_usage_error(project: Project) -> None:
    project.write("a.ipynb", "1")
    for pattern in ("/etc/*", "data/../../*"):
        run = project.run("run", "--cache-dir", "cache", "--cache-inputs", pattern)
        assert run.code == 2 and run.stderr.splitlines() == [
            f"nbci: error: --cache-inputs {pattern!r} must stay inside the working directory: "
            "use a relative path without '..'"]
