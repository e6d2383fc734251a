"""``--changed-since``: notebooks changed on a branch, or below a changed dependency file, in a real git repository."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import List

import pytest

from conftest import Project
from nbci.changes import ancestors, changed_files, select_changed
from nbci.errors import ConfigError

NOTEBOOKS = ["a/one.ipynb", "a/two.ipynb", "a/deep/three.ipynb", "b/four.ipynb", "top.ipynb", "ü x/five.ipynb"]


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout


def commit(repo: Path, message: str) -> None:
    git(repo, "add", "--all")
    git(repo, "commit", "--quiet", "-m", message)


@pytest.fixture
def repo(project: Project) -> Project:
    """A repository whose ``main`` holds every notebook, checked out on a fresh ``feature`` branch."""
    root = project.root
    git(root, "init", "--quiet", "--initial-branch=main")
    git(root, "config", "user.name", "Test")
    git(root, "config", "user.email", "test@example.com")
    git(root, "config", "commit.gpgsign", "false")
    for path in NOTEBOOKS:
        project.write(path, f"print({path!r})")
    (root / "a" / "requirements.txt").write_text("numpy\n", encoding="utf-8")
    (root / "pyproject.toml").write_text("[project]\nname = 'docs'\n", encoding="utf-8")
    (root / ".gitignore").write_text("nbci-output/\nscratch/\n", encoding="utf-8")
    commit(root, "notebooks")
    git(root, "checkout", "--quiet", "-b", "feature")
    return project


def select(repo: Project, ref: str = "main", root: Path = None) -> List[str]:
    root = root or repo.root
    paths = sorted(str(p.relative_to(root).as_posix()) for p in root.rglob("*.ipynb") if "nbci-output" not in p.parts)
    return select_changed(paths, ref, root)


def test_nothing_changed_selects_nothing(repo: Project) -> None:
    assert select(repo) == []
    assert changed_files("main", repo.root) == set()


def test_a_committed_notebook_change_selects_that_notebook(repo: Project) -> None:
    repo.write("a/two.ipynb", "print('changed')")
    commit(repo.root, "change two")
    assert select(repo) == ["a/two.ipynb"]


def test_changes_made_on_the_ref_after_the_branch_forked_do_not_count(repo: Project) -> None:
    repo.write("b/four.ipynb", "print('on feature')")
    commit(repo.root, "feature change")
    git(repo.root, "checkout", "--quiet", "main")
    repo.write("top.ipynb", "print('on main')")
    commit(repo.root, "main moved on")
    git(repo.root, "checkout", "--quiet", "feature")
    assert select(repo) == ["b/four.ipynb"]  # like `git diff main...feature`: top.ipynb is main's change


def test_a_requirements_change_selects_its_folder_and_below_only(repo: Project) -> None:
    (repo.root / "a" / "requirements.txt").write_text("numpy\npandas\n", encoding="utf-8")
    commit(repo.root, "add pandas")
    assert select(repo) == ["a/deep/three.ipynb", "a/one.ipynb", "a/two.ipynb"]


@pytest.mark.parametrize("dependency_file", ["requirements-dev.txt", "environment.yml", "environment.yaml",
                                             "pyproject.toml"])
def test_each_kind_of_dependency_file_counts(repo: Project, dependency_file: str) -> None:
    (repo.root / "a" / "deep" / dependency_file).write_text("changed\n", encoding="utf-8")
    assert select(repo) == ["a/deep/three.ipynb"]


def test_a_top_level_dependency_change_selects_every_notebook(repo: Project) -> None:
    (repo.root / "pyproject.toml").write_text("[project]\nname = 'docs'\nversion = '2'\n", encoding="utf-8")
    commit(repo.root, "bump")
    assert select(repo) == sorted(NOTEBOOKS)


def test_other_files_do_not_select_notebooks(repo: Project) -> None:
    (repo.root / "a" / "data.csv").write_text("x\n1\n", encoding="utf-8")
    (repo.root / "a" / "README.md").write_text("# a\n", encoding="utf-8")
    (repo.root / "a" / "requirements.txt.bak").write_text("old\n", encoding="utf-8")
    commit(repo.root, "data")
    assert select(repo) == []


def test_uncommitted_and_untracked_changes_count_but_ignored_files_do_not(repo: Project) -> None:
    repo.write("top.ipynb", "print('edited, not committed')")
    repo.write("b/new.ipynb", "print('new, untracked')")
    repo.write("ü x/five.ipynb", "print('staged')")
    git(repo.root, "add", "ü x/five.ipynb")
    repo.write("scratch/ignored.ipynb", "print('ignored')")
    (repo.root / "scratch" / "requirements.txt").write_text("ignored\n", encoding="utf-8")
    assert select(repo) == ["b/new.ipynb", "top.ipynb", "ü x/five.ipynb"]


def test_a_renamed_notebook_is_selected_under_its_new_name(repo: Project) -> None:
    git(repo.root, "mv", "a/two.ipynb", "b/moved.ipynb")
    commit(repo.root, "move")
    assert select(repo) == ["b/moved.ipynb"]
    assert {"a/two.ipynb", "b/moved.ipynb"} <= changed_files("main", repo.root)


def test_paths_are_relative_to_a_subfolder_working_directory(repo: Project) -> None:
    repo.write("a/one.ipynb", "print('changed')")
    repo.write("b/four.ipynb", "print('changed, outside the subfolder')")
    commit(repo.root, "change")
    assert select(repo, root=repo.root / "a") == ["one.ipynb"]
    (repo.root / "requirements.txt").write_text("scipy\n", encoding="utf-8")  # above the subfolder
    assert select(repo, root=repo.root / "a") == ["deep/three.ipynb", "one.ipynb", "two.ipynb"]


def test_any_commit_or_tag_works_as_the_ref(repo: Project) -> None:
    git(repo.root, "tag", "v1")
    base = git(repo.root, "rev-parse", "HEAD").strip()
    repo.write("top.ipynb", "print('changed')")
    commit(repo.root, "change")
    assert select(repo, "v1") == select(repo, base) == select(repo, "HEAD~1") == ["top.ipynb"]


@pytest.mark.parametrize("ref", ["no-such-branch", "--output=x", "main..feature"])
def test_an_unknown_ref_is_a_config_error_with_a_hint(repo: Project, ref: str) -> None:
    with pytest.raises(ConfigError) as info:
        select(repo, ref)
    message = str(info.value)
    assert message.startswith(f"--changed-since {ref!r} is not a commit") and "fetch-depth: 0" in message
    assert "\n" not in message
    assert not (repo.root / "x").exists()


def test_a_ref_without_shared_history_is_a_config_error(repo: Project) -> None:
    git(repo.root, "checkout", "--quiet", "--orphan", "unrelated")
    commit(repo.root, "unrelated root")
    with pytest.raises(ConfigError, match="'main' shares no history with HEAD"):
        select(repo, "main")


def test_outside_a_git_repository_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "alone").mkdir()
    with pytest.raises(ConfigError, match="needs a git checkout, and .*alone is not one"):
        select_changed(["x.ipynb"], "main", tmp_path / "alone")


def test_ancestors_run_up_to_the_top_level() -> None:
    assert ancestors("a/b/c.ipynb") == ["a/b", "a", ""]
    assert ancestors("c.ipynb") == [""]


# --- CLI -----------------------------------------------------------------------------------------

def test_list_changed_since_then_shards(repo: Project) -> None:
    for path in ("a/one.ipynb", "b/four.ipynb", "top.ipynb"):
        repo.write(path, "print('changed')")
    commit(repo.root, "three changes")
    listed = repo.run("list", "--changed-since", "main", "--json")
    assert listed.code == 0, listed.stderr
    assert json.loads(listed.stdout) == ["a/one.ipynb", "b/four.ipynb", "top.ipynb"]
    assert "3 of 6 notebooks changed since main" in listed.stderr
    sharded = repo.run("list", "--shards", "2", env={"NBCI_CHANGED_SINCE": "main"})
    entries = json.loads(sharded.stdout)
    assert sorted(p for e in entries for p in e["notebooks"]) == ["a/one.ipynb", "b/four.ipynb", "top.ipynb"]


def test_run_changed_since_executes_only_the_changed_notebooks(repo: Project) -> None:
    repo.write("b/four.ipynb", "import pathlib; print(pathlib.Path.cwd().name)")
    commit(repo.root, "change four")
    run = repo.run("run", "--changed-since", "main")
    assert run.code == 0, run.stdout + run.stderr
    assert [nb["path"] for nb in run.results["notebooks"]] == ["b/four.ipynb"]
    assert run.executed("b/four.ipynb").cells[0].outputs[0]["text"] == "b\n"


def test_run_with_no_changes_passes_with_nothing_run(repo: Project) -> None:
    run = repo.run("run", "--changed-since", "main")
    assert run.code == 0, run.stderr
    assert run.results["summary"]["total"] == 0
    assert "0 of 6 notebooks changed since main" in run.stderr


@pytest.mark.parametrize("command", ["run", "list"])
def test_bad_ref_exits_2_with_one_line(repo: Project, command: str) -> None:
    run = repo.run(command, "--changed-since", "origin/nope")
    assert run.code == 2
    assert run.stderr.splitlines() == [
        "nbci: error: --changed-since 'origin/nope' is not a commit, branch or tag here: "
        "fetch it first (actions/checkout with fetch-depth: 0)"
    ]
