"""action/publish.py: the executed notebooks committed to a branch, against real bare repositories.

The remote is a bare repository in the test's folder: git's ``url.<base>.insteadOf`` (given in
GIT_CONFIG_* variables, as a user's configuration would) sends the action's
``https://github.com/OWNER/NAME.git`` there. The notebooks are run once, for real, by nbci.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import pytest
from conftest import Project, Run
from test_workflow_commands import parse_output_file

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "action"))

import publish  # noqa: E402
from test_action import act, cache_store, repository  # noqa: E402,F401  (the act fixtures)

pytestmark = pytest.mark.skipif(os.name == "nt", reason="drives git with POSIX paths")

HOSTILE = "-x\n::error title=spoofed::MARK $(touch pwned) `id`.ipynb"
TOKEN = "ghs_SECRETtoken0123456789"
BOT = "github-actions[bot] <41898282+github-actions[bot]@users.noreply.github.com>"


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Run:
    """nbci's real run: two notebooks that pass (one with a hostile name), one that fails, an index.ipynb."""
    project = Project(tmp_path_factory.mktemp("publish") / "project")
    project.root.mkdir()
    project.write("ok.ipynb", "print('ok')")
    project.write("index.ipynb", "1 + 1")
    project.write(HOSTILE, "print('hostile')")
    project.write("sub/bad.ipynb", "1 / 0")
    result = project.run("run", "--html", "--jobs", "2")
    assert result.code == 1, result.stdout + result.stderr
    return result


def git(cwd: Path, *args: str) -> str:
    """git in ``cwd``, with no GIT_ variable of the test's environment (an index or folder elsewhere)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


class Remote:
    """A bare repository standing in for github.com/OWNER/NAME, and the environment that points there."""

    def __init__(self, tmp_path: Path, run: Run) -> None:
        self.bare = tmp_path / "remotes" / "owner" / "notes.git"
        self.bare.mkdir(parents=True)
        git(self.bare, "init", "--quiet", "--bare")
        self.run, self.tmp_path = run, tmp_path
        (tmp_path / "temp").mkdir()

    def env(self, **extra: str) -> Dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith(("NBCI_", "GITHUB_", "GIT_"))}
        return {**base, "GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": f"url.{self.tmp_path.as_uri()}/remotes/.insteadOf",
                "GIT_CONFIG_VALUE_0": "https://github.com/", "GITHUB_EVENT_NAME": "push", "GITHUB_SHA": "a" * 40,
                "GITHUB_REPOSITORY": "owner/notes", "GITHUB_SERVER_URL": "https://github.com", "GITHUB_RUN_ID": "7",
                "RUNNER_TEMP": str(self.tmp_path / "temp"), "GITHUB_OUTPUT": str(self.tmp_path / "output"),
                "NBCI_PUBLISH_BRANCH": "executed",
                "NBCI_RESULTS": str(self.run.output_dir / "results.json"), "NBCI_OUTPUT_DIR": str(self.run.output_dir),
                "NBCI_HTML": "true", **extra}

    def publish(self, **extra: str) -> subprocess.CompletedProcess:
        """publish.py as the action runs it: in the working directory, with the engine's Python."""
        return subprocess.run([sys.executable, "-E", "-s", str(ROOT / "action" / "publish.py")], cwd=self.run.root,
                              env=self.env(**extra), capture_output=True, text=True)

    def files(self, ref: str = "executed") -> List[str]:
        return git(self.bare, "ls-tree", "-r", "-z", "--name-only", ref).strip("\0").split("\0")

    def log(self, ref: str = "executed") -> List[str]:
        return git(self.bare, "log", "--format=%H %P|%an <%ae>|%s", ref).splitlines()

    def commit_elsewhere(self, name: str) -> None:
        """Another writer's commit of ``name`` on the branch (a clone, a commit, a push)."""
        clone = self.tmp_path / f"clone-{name}"
        git(self.tmp_path, "clone", "--quiet", "--branch", "executed", str(self.bare), str(clone))
        (clone / name).write_text(name)
        git(clone, "add", name)
        git(clone, "-c", "user.name=other", "-c", "user.email=o@example.invalid", "commit", "-q", "-m", name)
        git(clone, "push", "--quiet", "origin", "executed")


@pytest.fixture
def remote(tmp_path: Path, run: Run) -> Remote:
    return Remote(tmp_path, run)


PASSED = ["index.ipynb", "index.ipynb.html", "ok.ipynb", "ok.html", HOSTILE, HOSTILE[: -len(".ipynb")] + ".html"]


def test_first_run_creates_the_orphan_branch_with_the_passed_notebooks(remote: Remote):
    proc = remote.publish()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [entry] = remote.log()
    commit, parents = entry.split("|")[0].split(" ", 1)
    assert parents == "" and entry.split("|")[1] == BOT
    assert entry.split("|")[2] == f"Executed notebooks of {'a' * 40}"
    assert sorted(remote.files()) == sorted(PASSED + ["index.html"])  # sub/bad.ipynb failed: not published
    assert parse_output_file((remote.tmp_path / "output").read_text()) == {"commit": commit}


def test_second_run_adds_one_commit_and_keeps_the_other_files(remote: Remote):
    assert remote.publish().returncode == 0
    remote.commit_elsewhere("README.md")
    proc = remote.publish(GITHUB_SHA="b" * 40, NBCI_PUBLISH_NOTEBOOKS="all")  # adds the failed notebook
    assert proc.returncode == 0, proc.stdout + proc.stderr
    log = remote.log()
    assert len(log) == 3 and log[0].split("|")[2] == f"Executed notebooks of {'b' * 40}"
    assert log[0].split("|")[0].split(" ")[1] == log[1].split(" ")[0]  # on the other writer's commit
    assert {"README.md", "sub/bad.ipynb", "sub/bad.html", *PASSED} <= set(remote.files())


def test_unchanged_files_make_no_commit(remote: Remote):
    assert remote.publish().returncode == 0
    proc = remote.publish(GITHUB_SHA="c" * 40)
    assert proc.returncode == 0 and "nothing to commit" in proc.stdout
    assert len(remote.log()) == 1


def test_pull_request_publishes_nothing_with_a_one_line_notice(remote: Remote):
    proc = remote.publish(GITHUB_EVENT_NAME="pull_request")
    assert proc.returncode == 0, proc.stderr
    notices = [line for line in proc.stdout.splitlines() if line.startswith("::notice")]
    assert notices == ["::notice title=notebook-ci%3A not published::publish-branch: nothing published on a "
                       "pull_request event; only push, workflow_dispatch, schedule runs publish"]
    assert git(remote.bare, "for-each-ref") == ""


def test_a_push_that_loses_a_race_is_committed_again_on_the_new_tip(remote: Remote, monkeypatch):
    assert remote.publish().returncode == 0
    pushes: List[List[str]] = []
    original = publish.Scratch.git

    def racing_git(self, *args, **kwargs):
        if args[0] == "push":
            pushes.append(list(args))
            if len(pushes) == 1:
                remote.commit_elsewhere("raced.txt")  # the branch moves between our fetch and our push
        return original(self, *args, **kwargs)

    monkeypatch.setattr(publish.Scratch, "git", racing_git)
    monkeypatch.chdir(remote.run.root)
    (remote.run.output_dir / "ok.ipynb").write_text((remote.run.output_dir / "ok.ipynb").read_text() + " ")
    outputs = publish.publish(remote.env(GITHUB_SHA="d" * 40))
    log = remote.log()
    assert len(pushes) == 2 and not any(a.startswith(("-f", "--force")) or a.startswith("+") for p in pushes for a in p)
    assert outputs["commit"] == log[0].split(" ")[0] and log[1].split("|")[2] == "raced.txt"
    assert "raced.txt" in remote.files()


def test_a_branch_that_keeps_moving_fails_clearly_and_keeps_the_others_commits(remote: Remote, monkeypatch):
    assert remote.publish().returncode == 0
    original = publish.Scratch.git
    moves = iter(range(publish.PUSH_ATTEMPTS))

    def racing_git(self, *args, **kwargs):
        if args[0] == "push":
            remote.commit_elsewhere(f"raced-{next(moves)}.txt")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(publish.Scratch, "git", racing_git)
    monkeypatch.chdir(remote.run.root)
    (remote.run.output_dir / "ok.ipynb").write_text((remote.run.output_dir / "ok.ipynb").read_text() + "  ")
    with pytest.raises(publish.StepError, match="moved during each of 3 pushes; nothing was forced"):
        publish.publish(remote.env())
    assert [line.split("|")[2] for line in remote.log()[:3]] == ["raced-2.txt", "raced-1.txt", "raced-0.txt"]


def test_hostile_names_reach_no_command_and_no_commit_message(remote: Remote):
    proc = remote.publish()
    assert proc.returncode == 0, proc.stderr
    assert HOSTILE in remote.files()
    assert not (remote.run.root / "pwned").exists()
    assert "MARK" not in git(remote.bare, "log", "--format=%B", "executed")
    commands = [line for line in (proc.stdout + proc.stderr).splitlines() if "::" in line]
    assert [line.split("::")[1].split(" ")[0] for line in commands] == ["group", "endgroup"]


def test_the_token_is_masked_sent_as_a_header_and_never_written(remote: Remote):
    proc = remote.publish(NBCI_PUBLISH_TOKEN=TOKEN)
    assert proc.returncode == 0, proc.stderr
    masks = [line for line in proc.stdout.splitlines() if TOKEN in line]
    assert masks == [f"::add-mask::{TOKEN}"]
    assert "::add-mask::eC1hY2Nlc3MtdG9rZW46" in proc.stdout  # base64 of x-access-token:...
    for folder in (remote.tmp_path, remote.run.root):
        for path in folder.rglob("*"):
            if path.is_file():
                assert TOKEN.encode() not in path.read_bytes(), path
    target = publish.target(remote.env(NBCI_PUBLISH_TOKEN=TOKEN))
    env = publish.git_environment({}, target, remote.tmp_path)
    headers = {env[f"GIT_CONFIG_VALUE_{n}"] for n in range(int(env["GIT_CONFIG_COUNT"]))
               if env[f"GIT_CONFIG_KEY_{n}"] == "http.https://github.com/.extraheader"}
    assert headers == {"", "AUTHORIZATION: basic eC1hY2Nlc3MtdG9rZW46Z2hzX1NFQ1JFVHRva2VuMDEyMzQ1Njc4OQ=="}
    assert "AUTHORIZATION" not in repr(target) and TOKEN not in repr(target)


def test_another_repository_is_its_own_remote(remote: Remote, tmp_path: Path):
    other = tmp_path / "remotes" / "course" / "site.git"
    other.mkdir(parents=True)
    git(other, "init", "--quiet", "--bare")
    proc = remote.publish(NBCI_PUBLISH_REPOSITORY="course/site", NBCI_HTML="false")
    assert proc.returncode == 0, proc.stderr
    assert sorted(git(other, "ls-tree", "-r", "-z", "--name-only", "executed").strip("\0").split("\0")) == sorted(
        ["index.ipynb", "ok.ipynb", HOSTILE])
    assert git(remote.bare, "for-each-ref") == ""


@pytest.mark.parametrize("inputs, says", [
    ({"NBCI_PUBLISH_BRANCH": "bad..name"}, "publish-branch 'bad..name' is no valid branch name"),
    ({"NBCI_PUBLISH_BRANCH": "--upload-pack=x"}, "is no valid branch name"),
    ({"NBCI_PUBLISH_REPOSITORY": "owner/notes --x"}, "publish-repository 'owner/notes --x' is not owner/name"),
    ({"NBCI_PUBLISH_BRANCH": "refs/heads/x"}, "publish-branch 'refs/heads/x' is no valid branch name"),
    ({"NBCI_PUBLISH_REPOSITORY": "../x"}, "publish-repository '../x' is not owner/name"),
    ({"NBCI_PUBLISH_REPOSITORY": "owner/."}, "publish-repository 'owner/.' is not owner/name"),
    ({"NBCI_PUBLISH_BRANCH": "feature", "GITHUB_REF_NAME": "feature"},
     "publish-branch 'feature' holds this repository's sources"),
    ({"NBCI_PUBLISH_BRANCH": "trunk", "GITHUB_EVENT_PATH": "EVENT"}, "publish-branch 'trunk' holds this repository's"),
    ({"NBCI_PUBLISH_TOKEN": "a b\n::x"}, "publish-token holds characters no token has"),
    ({"NBCI_PUBLISH_NOTEBOOKS": "some"}, "publish-notebooks must be passed or all, not 'some'"),
])
def test_bad_inputs_fail_with_one_clear_line(remote: Remote, inputs: Dict[str, str], says: str):
    event = remote.tmp_path / "event.json"
    event.write_text('{"repository": {"default_branch": "trunk"}}')
    proc = remote.publish(**{key: str(event) if value == "EVENT" else value for key, value in inputs.items()})
    assert proc.returncode == 1
    [error] = [line for line in proc.stdout.splitlines() if line.startswith("::error")]
    assert says in error
    assert git(remote.bare, "for-each-ref") == ""


@pytest.mark.act
def test_the_action_publishes_after_a_push_under_act(act, tmp_path: Path):
    bare = tmp_path / "remotes" / "owner" / "notes.git"
    bare.mkdir(parents=True)
    git(bare, "init", "--quiet", "--bare")
    run = act("publish.yml", env={"NBCI_ACT_USER_ENV": sys.prefix, "GIT_CONFIG_COUNT": "1",
                                  "GIT_CONFIG_KEY_0": f"url.{tmp_path.as_uri()}/remotes/.insteadOf",
                                  "GIT_CONFIG_VALUE_0": "https://github.com/"})
    assert run.code == 0, run.log[-5000:]
    assert run.step_results()["nbci/publish"] == "success"
    [entry] = git(bare, "log", "--format=%P|%an <%ae>|%s", "executed").splitlines()
    parents, author, subject = entry.split("|")
    assert parents == "" and author == BOT and subject.startswith("Executed notebooks of ")
    files = git(bare, "ls-tree", "-r", "--name-only", "executed").splitlines()
    assert sorted(files) == ["index.html", "passes.html", "passes.ipynb"]  # fails.ipynb did not pass
    assert run.outputs("nbci", "publish")["commit"] == git(bare, "rev-parse", "executed")


def test_the_checkouts_git_configuration_and_credentials_are_not_used(remote: Remote, tmp_path: Path):
    decoy = tmp_path / "decoy" / "notes.git"
    decoy.mkdir(parents=True)
    git(decoy, "init", "--quiet", "--bare")
    checkout = remote.run.root / ".git"
    git(remote.run.root, "init", "--quiet")
    try:  # what a checkout with persisted credentials holds, and a rewrite that would betray its use
        git(remote.run.root, "config", "http.https://github.com/.extraheader", "AUTHORIZATION: basic persisted")
        git(remote.run.root, "config", f"url.{decoy.parent.as_uri()}/.insteadOf", "https://github.com/owner/")
        proc = remote.publish()
        in_checkout = subprocess.run(["git", "ls-remote", "https://github.com/owner/notes.git"], cwd=remote.run.root,
                                     env=remote.env(), capture_output=True, text=True)
    finally:
        shutil.rmtree(checkout)
    assert proc.returncode == 0, proc.stderr
    assert in_checkout.returncode == 0 and in_checkout.stdout == ""  # the checkout's git would reach the decoy
    assert "index.html" in remote.files() and git(decoy, "for-each-ref") == ""


def test_the_token_reaches_no_step_of_a_pull_requests_run():
    import yaml

    steps = yaml.safe_load((ROOT / "action.yml").read_text())["runs"]["steps"]
    events = "contains(fromJSON('[{}]'), github.event_name)".format(", ".join(f'"{e}"' for e in publish.PUBLISH_EVENTS))
    [publishing] = [step for step in steps if "NBCI_PUBLISH_TOKEN" in step.get("env", {})]
    assert f"&& {events} }}}}" in publishing["if"] and "|| " not in publishing["if"]
    [notice] = [step for step in steps if step.get("name") == "Say why nothing is published"]
    assert notice["if"].endswith(f"&& !{events} }}}}") and "TOKEN" not in str(notice)
    said = subprocess.run(["bash", "-c", notice["run"]], env={"EVENT": "pull_request", "PATH": os.environ["PATH"]},
                          capture_output=True, text=True, check=True)
    assert said.stdout == ("::notice title=notebook-ci%3A not published::publish-branch: nothing published on a "
                           "pull_request event; only push, workflow_dispatch, schedule runs publish\n")


def test_the_branch_is_found_by_its_exact_name_not_a_tail(remote: Remote):
    remote.publish(NBCI_PUBLISH_BRANCH="a/refs/heads/executed")
    before = remote.log("a/refs/heads/executed")
    proc = remote.publish()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [entry] = remote.log()
    assert entry.split("|")[0].split(" ", 1)[1] == ""  # an orphan of its own, not on the other's tip
    assert remote.log("a/refs/heads/executed") == before


def test_the_same_branch_of_another_repository_is_published(remote: Remote):
    proc = remote.publish(NBCI_PUBLISH_BRANCH="main", GITHUB_REF_NAME="main", GITHUB_REPOSITORY="owner/sources",
                          NBCI_PUBLISH_REPOSITORY="owner/notes")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(remote.files("main")) == sorted(PASSED + ["index.html"])
