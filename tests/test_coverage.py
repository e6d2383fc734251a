"""``--coverage``: the lines of a small package the notebooks ran, measured in real kernels, equal what
``coverage run`` of the same calls as a plain script reports, however the kernels were started."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path
from typing import Dict, List

import pytest

from nbci.code_coverage import is_contribution, read_contribution
from conftest import Run, nbci_env
from test_workflow_commands import parse_output_file

pytest.importorskip("coverage")

LIBRARY = '''def add(a, b):
    return a + b


def sub(a, b):
    if a > b:
        return a - b
    return b - a


def unused():
    total = 0
    for i in range(3):
        total += i
    return total
'''
IMPORT = "import sys; sys.path.insert(0, '..')\nimport mylib"
CALLS = {"nbs/add.ipynb": ["mylib.add(1, 2)"], "nbs/sub.ipynb": ["mylib.sub(5, 3)", "x = 1"]}


def make_project(project, calls: Dict[str, List[str]] = CALLS) -> None:
    (project.root / "mylib").mkdir()
    (project.root / "mylib" / "__init__.py").write_text(LIBRARY)
    for path, cells in calls.items():
        project.write(path, IMPORT, *cells)


def script_coverage(project, calls: Dict[str, List[str]]) -> dict:
    """``coverage run`` of every call as one plain script, as ``coverage json`` reports it."""
    script = project.root / "script_calls.py"
    lines = [line for cells in calls.values() for cell in cells for line in cell.splitlines() if "sleep" not in line]
    script.write_text("import mylib\n" + "\n".join(lines) + "\n")
    data = project.root.parent / "script.coverage"
    env = {**os.environ, "COVERAGE_FILE": str(data)}
    for command in (["run", "--source", str(project.root / "mylib"), str(script)],
                    ["json", "-o", str(project.root.parent / "script.json")]):
        subprocess.run([sys.executable, "-m", "coverage", *command], cwd=project.root, env=env, check=True,
                       capture_output=True)
    script.unlink()
    return json.loads((project.root.parent / "script.json").read_text())


def lines_by_file(report: dict) -> Dict[str, list]:
    return {Path(path).name: data["executed_lines"] for path, data in report["files"].items()}


def assert_same_as_script(run, project, calls: Dict[str, List[str]] = CALLS) -> None:
    expected = script_coverage(project, calls)
    got = json.loads((run.output_dir / "coverage.json").read_text())
    assert lines_by_file(got) == lines_by_file(expected)
    assert got["totals"]["covered_lines"] == expected["totals"]["covered_lines"]
    assert got["totals"]["num_statements"] == expected["totals"]["num_statements"]
    assert run.results["summary"]["coverage"]["percent"] == round(expected["totals"]["percent_covered"], 2)


MODES = {"spawn": ([], {}), "fork": (["--kernel-start", "fork"], {"PYTHONHASHSEED": "0"}),
         "helpers": (["--jobs", "2", "--helpers", "1"], {})}


@pytest.mark.parametrize("mode", sorted(MODES))
def test_lines_equal_coverage_run_of_the_same_calls(project, mode):
    make_project(project)
    args, env = MODES[mode]
    run = project.run("run", "nbs", "--coverage", "--coverage-source", "mylib", "--html", *args, env=env)
    assert run.code == 0, run.stderr
    assert_same_as_script(run, project)
    assert (run.output_dir / "coverage.xml").read_text().startswith("<?xml")
    assert 'href="coverage/index.html"' in (run.output_dir / "index.html").read_text()
    assert (run.output_dir / "coverage" / "index.html").is_file()
    assert run.result("nbs/add.ipynb")["coverage"] == {"state": "complete", "note": None,
                                                       "files": {"mylib/__init__.py": 4}}  # 3 defs, 1 return
    assert "coverage_data" not in run.result("nbs/add.ipynb")
    assert "coverage: 54.55% of 11 statements in 1 files" in run.stdout
    executed = run.executed("nbs/add.ipynb")
    assert [cell.execution_count for cell in executed.cells] == [1, 2]  # measurement ran unseen
    assert not any("ipykernel" in path for path in json.loads((run.output_dir / "coverage.json").read_text())["files"])


def test_a_cell_timeout_keeps_the_lines_the_cell_ran(project):
    calls = {"nbs/slow.ipynb": ["mylib.add(1, 2)", "mylib.sub(5, 3)\nimport time\ntime.sleep(120)"]}
    make_project(project, calls)
    run = project.run("run", "nbs", "--coverage", "--coverage-source", "mylib", "--timeout", "3")
    assert run.code == 1
    assert run.result("nbs/slow.ipynb")["status"] == "timeout"
    assert run.result("nbs/slow.ipynb")["coverage"]["state"] == "complete"
    assert_same_as_script(run, project, calls)


def test_a_killed_kernel_keeps_its_finished_cells_and_says_so(project):
    calls = {"nbs/killed.ipynb": ["mylib.add(1, 2)", "import time\ntime.sleep(120)"]}
    make_project(project, calls)
    run = project.run("run", "nbs", "--coverage", "--coverage-source", "mylib", "--notebook-timeout", "3")
    assert run.result("nbs/killed.ipynb")["status"] == "notebook-timeout"
    coverage = run.result("nbs/killed.ipynb")["coverage"]
    assert coverage["state"] == "partial" and "not counted" in coverage["note"]
    assert run.results["summary"]["coverage"]["incomplete_notebooks"] == ["nbs/killed.ipynb"]
    assert_same_as_script(run, project, calls)


def test_a_cached_run_reports_the_same_coverage(project):
    make_project(project)
    args = ("run", "nbs", "--coverage", "--coverage-source", "mylib", "--cache-dir", ".cache")
    cold = project.run(*args)
    cold_json = json.loads((cold.output_dir / "coverage.json").read_text())
    warm = project.run(*args)
    assert warm.code == 0, warm.stderr
    assert warm.results["summary"]["cached"] == 2
    assert lines_by_file(json.loads((warm.output_dir / "coverage.json").read_text())) == lines_by_file(cold_json)
    assert warm.results["summary"]["coverage"]["percent"] == cold.results["summary"]["coverage"]["percent"]


def test_fail_under_fails_the_run_with_a_clear_line(project):
    make_project(project)
    run = project.run("run", "nbs", env={"NBCI_COVERAGE": "true", "NBCI_COVERAGE_SOURCE": "mylib",
                                         "NBCI_COVERAGE_FAIL_UNDER": "90"})  # as the action passes its inputs
    assert run.code == 1
    assert "below --coverage-fail-under 90: the run fails" in run.stdout
    assert run.results["summary"]["coverage"]["ok"] is False
    assert all(nb["status"] == "passed" for nb in run.results["notebooks"])


def test_default_source_is_the_repository_config(project):
    make_project(project)
    (project.root / "mylib" / "skipped.py").write_text("def never():\n    return 1\n")
    (project.root / ".coveragerc").write_text("[run]\nsource = mylib\nomit = mylib/skipped.py\n")
    run = project.run("run", "nbs", "--coverage")
    assert run.code == 0, run.stderr
    assert_same_as_script(run, project)


def test_hostile_data_files_are_refused(tmp_path):
    (tmp_path / "root").mkdir()
    (tmp_path / "garbage").write_bytes(b"not sqlite at all" * 10)
    with pytest.raises(ValueError):
        read_contribution(tmp_path / "garbage", tmp_path / "root")
    os.symlink("/etc/passwd", tmp_path / "link")
    with pytest.raises(OSError):
        read_contribution(tmp_path / "link", tmp_path / "root")


@pytest.fixture(scope="session")
def other_env(tmp_path_factory) -> Path:
    """One virtual environment, not nbci's, with ipykernel and coverage, as the action's kernels have."""
    folder = tmp_path_factory.mktemp("kernel-env")
    venv.create(folder / "env", with_pip=True)
    python = folder / "env" / "bin" / "python"
    done = subprocess.run([str(python), "-m", "pip", "install", "-q", "ipykernel", "coverage"], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot install ipykernel into a new environment: {done.stderr[-300:]!r}")
    spec = folder / "jupyter" / "kernels" / "other"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({"argv": [str(python), "-m", "ipykernel_launcher", "-f",
                                                           "{connection_file}"],
                                                  "display_name": "other", "language": "python"}))
    return folder


def test_a_kernel_in_another_environment_is_measured(project, other_env):
    make_project(project)
    run = project.run("run", "nbs", "--coverage", "--coverage-source", "mylib", "--kernel", "other",
                      env={"JUPYTER_PATH": str(other_env / "jupyter")})
    assert run.code == 0, run.stderr
    assert run.result("nbs/add.ipynb")["kernel"] == "other"
    assert_same_as_script(run, project)


def test_a_kernel_without_coverage_is_one_clear_line(project, tmp_path):
    make_project(project)
    stub = tmp_path / "stub" / "coverage"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'coverage'\", name='coverage')\n")
    spec = tmp_path / "jupyter" / "kernels" / "nocov"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"], "display_name": "nocov",
        "language": "python", "env": {"PYTHONPATH": str(stub.parent)}}))
    run = project.run("run", "nbs", "--coverage", "--coverage-source", "mylib", "--kernel", "nocov",
                      env={"JUPYTER_PATH": str(tmp_path / "jupyter")})
    assert run.code == 3
    errors = [line for line in run.stderr.splitlines() if line.startswith("nbci: error:")]
    assert errors == ["nbci: error: --coverage: coverage.py is not installed in the environment of kernel 'nocov': "
                      "install it there (pip install coverage), next to ipykernel"]
    assert all(nb["status"] == "passed" and nb["coverage"]["state"] == "missing" for nb in run.results["notebooks"])


def test_github_gets_the_output_and_the_summary_line(project, tmp_path):
    make_project(project)
    output, summary = tmp_path / "output", tmp_path / "summary"
    run = project.run("run", "nbs", "--coverage", "--coverage-source", "mylib", "--github",
                      env={"GITHUB_OUTPUT": str(output), "GITHUB_STEP_SUMMARY": str(summary)})
    assert run.code == 0, run.stderr
    assert parse_output_file(output.read_text(encoding="utf-8"))["coverage"] == "54.55"
    assert "`coverage: 54.55% of 11 statements in 1 files`" in summary.read_text()


def test_only_the_final_attempt_of_a_retried_notebook_counts(project):
    first = "import os\nif not os.path.exists('tried'):\n    open('tried', 'w').close()\n    mylib.sub(5, 3)\n    os._exit(1)"
    make_project(project, {"nbs/retried.ipynb": [first, "mylib.add(1, 2)"]})
    run = project.run("run", "nbs", "--coverage", "--coverage-source", "mylib", "--retries", "1")
    assert run.code == 0, run.stderr
    assert run.result("nbs/retried.ipynb")["status"] == "flaky"
    assert_same_as_script(run, project, {"nbs/retried.ipynb": ["mylib.add(1, 2)"]})


TAMPER = '''import os
from coverage import CoverageData
measurement = [c for c in ().__class__.__base__.__subclasses__() if c.__qualname__ == "Measurement"][0]
path = measurement.cov.config.data_file
measurement.cov.stop()
measurement.cov = type("Idle", (), {"stop": lambda self: None, "save": lambda self: None})()
os.remove(path)
'''


def test_a_notebook_tampering_with_its_data_costs_only_its_own_coverage(project):
    (project.root / "secret.txt").write_text("TOKEN=abc\n")
    make_project(project, {
        "nbs/garbage.ipynb": [TAMPER + "open(path, 'wb').write(b'not sqlite' * 100)"],
        "nbs/link.ipynb": [TAMPER + "os.symlink('/etc/passwd', path)"],
        "nbs/claims.ipynb": [TAMPER + "data = CoverageData(path)\n"
                             "data.add_lines({os.path.abspath('../secret.txt'): [1], '/etc/passwd': [1]})\n"
                             "data.write()"],
        "nbs/add.ipynb": ["mylib.add(1, 2)"]})
    run = project.run("run", "nbs", "--coverage", "--coverage-source", "mylib", "--html")
    assert run.code == 0, run.stderr
    for path in ("nbs/garbage.ipynb", "nbs/link.ipynb"):
        coverage = run.result(path)["coverage"]
        assert coverage["state"] == "missing" and "could not be read" in coverage["note"]
    assert run.result("nbs/claims.ipynb")["coverage"]["files"] == {}
    assert_same_as_script(run, project, {"nbs/add.ipynb": ["mylib.add(1, 2)"]})
    reports = [p.read_text() for p in (run.output_dir / "coverage").iterdir() if p.suffix == ".html"]
    assert not any("TOKEN=abc" in text or "root:x:" in text for text in reports)


def test_reports_replace_links_planted_in_the_output_folder(project, tmp_path):
    make_project(project)
    victim = tmp_path / "victim"
    victim.write_text("kept\n")
    (project.root / "nbci-output").mkdir()
    for name in ("coverage.xml", "coverage.json", "coverage.data"):
        os.symlink(victim, project.root / "nbci-output" / name)
    os.symlink(tmp_path, project.root / "nbci-output" / "coverage")
    run = project.run("run", "nbs", "--coverage", "--coverage-source", "mylib", "--html")
    assert run.code == 0, run.stderr
    assert victim.read_text() == "kept\n" and not (tmp_path / "index.html").exists()
    for name in ("coverage.xml", "coverage.json", "coverage.data", "coverage"):
        assert not (run.output_dir / name).is_symlink()
    assert_same_as_script(run, project)


def test_shards_data_files_combine_to_the_whole_runs_coverage(project):
    make_project(project)
    for shard in ("1/2", "2/2"):
        run = project.run("run", "nbs", "--coverage", "--coverage-source", "mylib", "--shard", shard,
                          "--output-dir", f"out-{shard[0]}")
        assert run.code == 0, run.stderr
        assert run.results["summary"]["total"] == 1
    merged = project.root.parent / "merged"
    env = {**os.environ, "COVERAGE_FILE": str(merged)}
    subprocess.run([sys.executable, "-m", "coverage", "combine", "--keep", str(project.root / "out-1" / "coverage.data"),
                    str(project.root / "out-2" / "coverage.data")], cwd=project.root, env=env, check=True,
                   capture_output=True)
    subprocess.run([sys.executable, "-m", "coverage", "json", "-o", str(project.root.parent / "merged.json")],
                   cwd=project.root, env=env, check=True, capture_output=True)
    combined = json.loads((project.root.parent / "merged.json").read_text())
    expected = script_coverage(project, CALLS)
    assert lines_by_file(combined) == lines_by_file(expected)
    assert combined["totals"]["percent_covered"] == expected["totals"]["percent_covered"]


def test_only_well_formed_contributions_are_combined():
    assert is_contribution({"branch": False, "files": {"a.py": [1, 2]}})
    assert is_contribution({"branch": True, "files": {"a.py": [[-1, 1], [1, -1]]}})
    for bad in (None, [], {"files": []}, {"files": {"a.py": ["1"]}}, {"files": {"a.py": [[1, 2, 3]]}},
                {"files": {"a.py": [True]}}, {"files": {1: [1]}}):
        assert not is_contribution(bad)


ENDLESS_VIEW = '''
import sqlite3
db = sqlite3.connect(path)
db.executescript("""
create table coverage_schema (version integer); insert into coverage_schema values (7);
create table meta (key text, value text, unique (key));
insert into meta values ('sys_argv', '[]'), ('version', '7.0'), ('has_arcs', '0');
create view file as with recursive c(x) as (select 1 union all select x + 1 from c) select 'p' as path, 1 as id
    from c where x < 0;
create table context (id integer primary key, context text, unique (context));
create table line_bits (file_id integer, context_id integer, numbits blob, unique (file_id, context_id));
create table arc (file_id integer, context_id integer, fromno integer, tono integer,
    unique (file_id, context_id, fromno, tono));
create table tracer (file_id integer primary key, tracer text);
""")
db.commit()
db.close()
'''


def test_a_data_file_whose_query_never_ends_costs_only_its_own_coverage(project):
    make_project(project, {"nbs/endless.ipynb": [TAMPER + ENDLESS_VIEW], "nbs/add.ipynb": ["mylib.add(1, 2)"]})
    run = project.run("run", "nbs", "--coverage", "--coverage-source", "mylib")
    assert run.code == 0, run.stderr
    coverage = run.result("nbs/endless.ipynb")["coverage"]
    assert coverage["state"] == "missing" and "coverage data unreadable" in coverage["note"]
    assert_same_as_script(run, project, {"nbs/add.ipynb": ["mylib.add(1, 2)"]})


def test_report_settings_that_backtrack_forever_are_one_clear_line(project):
    make_project(project)
    with (project.root / "mylib" / "__init__.py").open("a") as handle:
        handle.write(f"\n\nLETTERS = '{'a' * 50}b'\n")
    (project.root / ".coveragerc").write_text("[run]\nsource = mylib\n[report]\nexclude_lines = (a+)+$\n")
    run = project.run("run", "nbs", "--coverage")
    assert run.code == 3
    errors = [line for line in run.stderr.splitlines() if line.startswith("nbci: error:")]
    assert len(errors) == 1 and "the coverage report failed (took over" in errors[0] and "exclude_lines" in errors[0]
    assert all(nb["status"] == "passed" for nb in run.results["notebooks"])
    assert not (run.output_dir / "coverage.json").exists()


HANDSHAKE = '''import os, time


def wait_for(name):
    deadline = time.monotonic() + 120
    while not os.path.exists(name) and time.monotonic() < deadline:
        time.sleep(0.01)
'''
OVERWRITE_OTHERS = HANDSHAKE + '''
from coverage import CoverageData
measurement = [c for c in ().__class__.__base__.__subclasses__() if c.__qualname__ == "Measurement"][0]
mine = measurement.cov.config.data_file
folders = [os.path.dirname(mine), os.path.dirname(os.path.dirname(mine))]
claim = {os.path.abspath("../mylib/__init__.py"): [12, 13, 14, 15]}


def overwrite_every_data_file():
    for folder in folders:
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        for name in names:
            path = os.path.join(folder, name)
            if path != mine and name.endswith(".data") and os.path.isfile(path):
                data = CoverageData(basename=path)
                data.add_lines(claim)
                data.write()


wait_for("victim-measured")  # the victim's kernel has written its data file and not yet saved
overwrite_every_data_file()
open("attacker-done", "w").close()
'''


def test_a_notebook_cannot_find_another_notebooks_data_file(project):
    calls = {"nbs/victim.ipynb": ["mylib.add(1, 2)", HANDSHAKE + "open('victim-measured', 'w').close()\n"
                                  "wait_for('attacker-done')"]}
    make_project(project, {**calls, "nbs/attacker.ipynb": [OVERWRITE_OTHERS]})
    run = project.run("run", "nbs", "--coverage", "--coverage-source", "mylib", "--jobs", "2")
    assert run.code == 0, run.stderr
    assert run.result("nbs/victim.ipynb")["coverage"]["files"] == {"mylib/__init__.py": 4}
    assert_same_as_script(run, project, {"nbs/victim.ipynb": ["mylib.add(1, 2)"]})


def test_a_cached_run_reports_a_new_source_file_as_a_fresh_run_does(project):
    make_project(project)
    args = ("run", "nbs", "--coverage", "--coverage-source", "mylib")
    assert project.run(*args, "--cache-dir", ".cache").code == 0
    (project.root / "mylib" / "newmod.py").write_text("def later():\n    return 2\n")
    warm = project.run(*args, "--cache-dir", ".cache")
    assert warm.results["summary"]["cached"] == 2, warm.stdout
    warm_json = json.loads((warm.output_dir / "coverage.json").read_text())
    fresh = project.run(*args)
    fresh_json = json.loads((fresh.output_dir / "coverage.json").read_text())
    assert "newmod.py" in lines_by_file(fresh_json)
    assert lines_by_file(warm_json) == lines_by_file(fresh_json)
    assert warm_json["totals"]["num_statements"] == fresh_json["totals"]["num_statements"]


def test_cached_line_numbers_past_the_end_of_the_file_are_dropped(project):
    make_project(project)
    args = ("run", "nbs", "--coverage", "--coverage-source", "mylib", "--cache-dir", ".cache")
    cold = project.run(*args)
    for entry in (project.root / ".cache").rglob("*.json"):
        stored = json.loads(entry.read_text())
        if isinstance(stored, dict) and "coverage_data" in stored.get("result", {}):
            stored["result"]["coverage_data"]["files"]["mylib/__init__.py"].append(2**40)
            entry.write_text(json.dumps(stored))
    warm = project.run(*args)
    assert warm.code == 0, warm.stderr
    assert warm.results["summary"]["cached"] == 2
    assert warm.stderr.count("line numbers past the end of their file") == 1
    assert warm.results["summary"]["coverage"] == cold.results["summary"]["coverage"]


def test_modules_of_the_repository_do_not_load_in_nbcis_child_processes(project):
    make_project(project)
    (project.root / "sqlite3.py").write_text("open(__file__ + '.loaded', 'w').close()\n")
    nbci = Path(sys.executable).parent / "nbci"  # as the action runs it: the repository is not on its path
    if not nbci.is_file():
        pytest.skip("the nbci script is not installed next to this Python")
    done = subprocess.run([str(nbci), "run", "nbs", "--coverage", "--coverage-source", "mylib"], cwd=project.root,
                          env=nbci_env(), capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    assert not (project.root / "sqlite3.py.loaded").exists()
    (project.root / "sqlite3.py").unlink()  # before coverage.py runs the plain script there
    assert_same_as_script(Run(0, done.stdout, done.stderr, project.root, project.root / "nbci-output"), project)
