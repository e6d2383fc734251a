"""The execution cache, with real kernels: a result is reused only while nothing it depends on changed."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Dict, List

import nbformat
import pytest

from conftest import Project


def statuses(run) -> Dict[str, str]:
    return {nb["path"]: nb["status"] for nb in run.results["notebooks"]}


def cached_run(project: Project, *args: str, env=None):
    return project.run("run", "--cache-dir", "nbci-cache", "--timeout", "60", *args, env=env)


def entries(project: Project) -> List[Path]:
    return sorted((project.root / "nbci-cache").glob("*/*.json"))


@pytest.fixture
def repo(project: Project) -> Project:
    (project.root / "data.csv").write_text("a,b\n1,2\n")
    (project.root / "helpers.py").write_text("def answer():\n    return 42\n")
    project.write("reads_data.ipynb", "print(open('data.csv').read())")
    project.write("imports.ipynb", "import helpers\nhelpers.answer()")
    project.write("plain.ipynb", "x = 1", "print(x + 1)")
    return project


def test_an_unchanged_run_reuses_every_result_with_its_outputs(repo: Project) -> None:
    first = cached_run(repo)
    assert first.code == 0 and set(statuses(first).values()) == {"passed"}
    second = cached_run(repo, env={"GITHUB_SHA": "abc1234def", "GITHUB_RUN_ID": "77"})
    assert second.code == 0 and set(statuses(second).values()) == {"cached"}
    assert second.results["summary"]["cached"] == 3 and second.results["summary"]["passed"] == 3
    plain = second.result("plain.ipynb")
    assert plain["cached_from"]["ran_at"] and plain["cached_from"]["duration"] is not None
    assert second.executed("plain.ipynb").cells[1].outputs[0]["text"] == "2\n"  # the copy has the outputs
    assert "CACHED" in second.stdout and "ran " in second.stdout
    junit = (second.output_dir / "junit.xml").read_text()
    assert junit.count('name="nbci.cached_from"') == 3 and "<failure" not in junit


def test_edits_rerun_exactly_what_they_touch(repo: Project) -> None:
    cached_run(repo)
    nb = nbformat.read(str(repo.root / "plain.ipynb"), 4)
    nb.cells.insert(0, nbformat.v4.new_markdown_cell("# a new title"))
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="stored\n")]
    nbformat.write(nb, str(repo.root / "plain.ipynb"))
    assert set(statuses(cached_run(repo)).values()) == {"cached"}  # markdown and stored outputs: not code
    (repo.root / "helpers.py").write_text("def answer():\n    return 43\n")
    assert statuses(cached_run(repo)) == {"imports.ipynb": "passed", "plain.ipynb": "cached",
                                          "reads_data.ipynb": "cached"}
    (repo.root / "data.csv").write_text("a,b\n1,3\n")
    assert statuses(cached_run(repo)) == {"imports.ipynb": "cached", "plain.ipynb": "cached",
                                          "reads_data.ipynb": "passed"}
    nb = nbformat.read(str(repo.root / "plain.ipynb"), 4)
    nb.cells[2].source = "print(x + 2)"
    nbformat.write(nb, str(repo.root / "plain.ipynb"))
    assert statuses(cached_run(repo))["plain.ipynb"] == "passed"
    nb.cells[2].metadata["tags"] = ["raises-exception"]
    nbformat.write(nb, str(repo.root / "plain.ipynb"))
    assert statuses(cached_run(repo)) == {"imports.ipynb": "cached", "plain.ipynb": "passed",
                                          "reads_data.ipynb": "cached"}
    (repo.root / "data.csv").unlink()  # a file it read is gone: run again (and fail, as it should)
    assert statuses(cached_run(repo))["reads_data.ipynb"] == "failed"


def test_declared_inputs_and_dependency_files_join_every_key(repo: Project) -> None:
    (repo.root / "config.toml").write_text("x = 1\n")
    cached_run(repo, "--cache-inputs", "*.toml")
    assert set(statuses(cached_run(repo, "--cache-inputs", "*.toml")).values()) == {"cached"}
    (repo.root / "config.toml").write_text("x = 2\n")
    assert set(statuses(cached_run(repo, "--cache-inputs", "*.toml")).values()) == {"passed"}
    (repo.root / "requirements.txt").write_text("six\n")
    assert set(statuses(cached_run(repo, "--cache-inputs", "*.toml")).values()) == {"passed"}
    assert set(statuses(cached_run(repo, "--cache-inputs", "*.toml")).values()) == {"cached"}


def test_declared_inputs_outside_the_repository_are_never_read(repo: Project, tmp_path: Path) -> None:
    outside = tmp_path / "secret.toml"
    outside.write_text("token = 1\n")
    (repo.root / "link.toml").symlink_to(outside)
    patterns = ["--cache-inputs", "*.toml"]
    cached_run(repo, *patterns)
    outside.write_text("token = 2\n")  # not through the link: the key stays
    assert set(statuses(cached_run(repo, *patterns)).values()) == {"cached"}


def test_a_package_installed_in_the_kernels_environment_reruns_everything(repo: Project, tmp_path: Path) -> None:
    site = tmp_path / "extra-site"
    site.mkdir()
    env = {"PYTHONPATH": str(site)}
    cached_run(repo, env=env)
    assert set(statuses(cached_run(repo, env=env)).values()) == {"cached"}
    dist = site / "fakepkg-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fakepkg\nVersion: 1.0\n")
    assert set(statuses(cached_run(repo, env=env)).values()) == {"passed"}


def test_failures_are_never_cached(project: Project) -> None:
    project.write("fails.ipynb", "1/0")
    cached_run(project)
    assert statuses(cached_run(project)) == {"fails.ipynb": "failed"} and entries(project) == []


def test_old_damaged_and_ignored_entries_run_again(repo: Project) -> None:
    cached_run(repo)
    for path in entries(repo):
        data = json.loads(path.read_text())
        data["created"] = time.time() - 8 * 86400  # past the default 7 days
        path.write_text(json.dumps(data))
    assert set(statuses(cached_run(repo)).values()) == {"passed"}
    assert set(statuses(cached_run(repo, "--cache-max-age", "0")).values()) == {"cached"}
    damaged = entries(repo)[0]
    damaged.write_text("{not json")
    run = cached_run(repo)
    assert sorted(statuses(run).values()) == ["cached", "cached", "passed"]
    assert run.code == 0 and "damaged" in run.stdout and json.loads(damaged.read_text())["key"]
    assert set(statuses(cached_run(repo, "--no-cache")).values()) == {"passed"}


def test_reads_are_recorded_unseen(repo: Project) -> None:
    repo.write("namespace.ipynb", "print(sorted(k for k in globals() if not k.startswith('_') and k not in "
                                  "('In', 'Out', 'get_ipython', 'exit', 'quit', 'open')))", "len(In)")
    run = cached_run(repo)
    copy = run.executed("namespace.ipynb")
    assert copy.cells[0].outputs[0]["text"] == "[]\n"  # nothing of nbci's in the namespace
    assert copy.cells[0].execution_count == 1 and copy.cells[1].execution_count == 2
    assert copy.cells[1].outputs[0]["data"]["text/plain"] == "3"  # In: '', cell 1, cell 2: no hidden entries


def test_two_runs_share_one_cache_folder(repo: Project) -> None:
    args = ("run", "--cache-dir", "nbci-cache", "--timeout", "60", "--output-dir")
    first, second = repo.popen(*args, "out1"), repo.popen(*args, "out2")
    assert first.wait(timeout=120) == 0 and second.wait(timeout=120) == 0
    for path in entries(repo):
        assert json.loads(path.read_text())["result"]["status"] == "passed"  # whole entries only
    assert set(statuses(cached_run(repo)).values()) == {"cached"}
