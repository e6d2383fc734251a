"""The action's helper scripts (action/): planning, entering the environment, engine and kernel setup."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Dict

import pytest
from test_workflow_commands import parse_output_file

ROOT = Path(__file__).resolve().parent.parent
ACTION = ROOT / "action"
sys.path.insert(0, str(ACTION))

import common  # noqa: E402
import setup_engine  # noqa: E402
import setup_kernel  # noqa: E402

# The bash helpers run on Windows runners in Git Bash; these tests drive them with a POSIX bash.
posix = pytest.mark.skipif(os.name == "nt", reason="drives bash scripts with POSIX paths")


def run_script(script: str, cwd: Path, env: Dict[str, str], *args: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("INPUT_", "NBCI_", "GITHUB_"))}
    return subprocess.run(["bash", str(ACTION / script), *args], cwd=cwd, env={**base, **env},
                          capture_output=True, text=True, input="standard input, which no script may read")


class Plan:
    """Run plan.sh in a scratch workspace and read its outputs."""

    def __init__(self, workspace: Path) -> None:
        self.workspace = workspace

    def __call__(self, **inputs: str) -> Dict[str, str]:
        proc = self.run(**inputs)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return parse_output_file((self.workspace.parent / "output").read_text())

    def run(self, **inputs: str) -> subprocess.CompletedProcess:
        output = self.workspace.parent / "output"
        output.write_text("")
        env = {f"INPUT_{k.upper()}": v for k, v in inputs.items()}
        env.update(GITHUB_OUTPUT=str(output), RUNNER_TEMP="/runner/temp", GITHUB_ACTION_PATH=str(ROOT),
                   RUNNER_OS="Linux", GITHUB_REF_NAME="feature/x,y", GITHUB_RUN_ID="42", GITHUB_RUN_ATTEMPT="2")
        return run_script("plan.sh", self.workspace, env)


@pytest.fixture
def plan(tmp_path: Path) -> Plan:
    workspace = tmp_path / "workspace"
    (workspace / "docs").mkdir(parents=True)
    return Plan(workspace)


@posix
def test_auto_is_python_without_an_environment_file(plan):
    assert plan(setup="auto", cache="false") == {
        "setup": "python", "requirements": "", "environment-file": "", "pip-cache": "",
        "uv-cache-dir": "", "cache-key": plan(setup="auto")["cache-key"],
        "mode": "run", "text-notebooks": "false", "artifact-name": "executed-notebooks", "shard-dir": "",
        "durations-dir": "", "durations-key": "", "durations-branch-prefix": "", "durations-prefix": "",
        "durations-save-key": "", "python-env": "/runner/temp/nbci-python-env", "python-env-python": "/runner/temp/nbci-python-env/bin/python",
        "conda-env": "", "env-key": "", "exec-cache-dir": "/runner/temp/nbci-execution-cache",
        "conda-installer": "miniconda", "python-version": "3.12", "install": "none", "project-dir": "",
        "env-python": "", "pixi-manifest": "", "pixi-locked": "false", "pixi-environment": "default",
        "apt-file": "", "post-build": "",
        "exec-key": plan(setup="auto")["exec-key"], "exec-restore-keys": plan(setup="auto")["exec-restore-keys"],
    }
    assert plan(setup="auto")["uv-cache-dir"] == "/runner/temp/nbci-uv-cache"


@posix
@pytest.mark.parametrize("notebooks, text", [("**/*.ipynb", "false"), ("docs/*.py", "true"), ("a.ipynb\nb.md", "true"),
                                             ("'my notes.qmd'", "true"), ("x.python", "false")])
def test_text_notebooks_in_the_notebooks_input_ask_for_jupytext(plan, notebooks: str, text: str):
    assert plan(notebooks=notebooks)["text-notebooks"] == text


@posix
def test_the_environment_cache_key_follows_setup_installer_dependencies_and_week(plan):
    requirements = plan.workspace / "requirements.txt"
    requirements.write_text("six\n")
    key = plan(installer="pip")["env-key"]
    assert re.fullmatch(r"python-pip-[0-9a-f]{20}-\d{4}-W\d{2}", key), key
    assert plan(installer="pip")["env-key"] == key
    assert plan()["env-key"] == ""  # uv installs from its cache as fast as an environment unpacks
    requirements.write_text("six==1.17.0\n")
    assert plan(installer="pip")["env-key"] != key
    assert plan(installer="pip", cache="false")["env-key"] == "" and plan(setup="none")["env-key"] == ""
    requirements.unlink()  # no dependency file: the hash of nothing (standard input is not read)
    assert plan(installer="pip")["env-key"].startswith("python-pip-e3b0c44298fc1c149afb-")
    assert plan(mode="list", shards="2")["python-env"] == ""  # a list job builds no environment
    (plan.workspace / "environment.yml").write_text("dependencies: [python]\n")
    conda = plan(setup="conda")
    assert conda["conda-env"] == "/runner/temp/nbci-conda-env" and conda["python-env"] == ""
    assert conda["env-key"].startswith("conda-uv-")


@posix
def test_auto_is_conda_when_the_environment_file_exists(plan):
    (plan.workspace / "docs" / "environment.yml").write_text("dependencies: [python]\n")
    outputs = plan(setup="auto", working_directory="docs/")
    assert outputs["setup"] == "conda" and outputs["environment-file"] == "docs/environment.yml"
    assert plan(setup="auto", working_directory="docs", environment_file="")["setup"] == "python"


@posix
def test_pip_cache_only_with_pip_and_an_existing_requirements_file(plan):
    assert plan(installer="pip")["pip-cache"] == ""  # setup-python would fail: no file to key on
    (plan.workspace / "docs" / "reqs.txt").write_text("six\n")
    outputs = plan(installer="pip", working_directory="docs", requirements="reqs.txt")
    assert outputs["pip-cache"] == "pip" and outputs["requirements"] == "docs/reqs.txt"
    assert outputs["uv-cache-dir"] == ""
    assert plan(installer="pip", working_directory="docs", requirements="reqs.txt", cache="false")["pip-cache"] == ""
    assert plan(working_directory="docs", requirements="reqs.txt", cache="false")["uv-cache-dir"] == ""
    assert plan(working_directory="docs", requirements="")["requirements"] == ""


@posix
def test_cache_key_follows_the_dependency_files(plan):
    requirements = plan.workspace / "requirements.txt"
    requirements.write_text("six\n")
    first = plan()["cache-key"]
    assert plan()["cache-key"] == first
    requirements.write_text("six==1.16.0\n")
    assert plan()["cache-key"] != first and len(first) == 20


@posix
@pytest.mark.parametrize("inputs, message", [
    ({"setup": "docker"}, "setup must be auto, python, conda, pixi or none, not 'docker'"),
    ({"installer": "poetry"}, "installer must be uv or pip, not 'poetry'"),
    ({"cache": "yes"}, "cache must be true or false, not 'yes'"),
    ({"working_directory": "nope"}, "working-directory 'nope' does not exist"),
    ({"setup": "conda"}, "setup: conda needs an environment file, and 'environment.yml' does not exist"),
    ({"mode": "matrix"}, "mode must be run or list, not 'matrix'"),
    ({"mode": "list"}, "shards (mode: list needs it) must be a whole number from 1 to 256, not ''"),
    ({"mode": "list", "shards": "0"}, "shards (mode: list needs it) must be"),
    ({"mode": "list", "shards": "257"}, "from 1 to 256, not '257'"),
    ({"mode": "list", "shards": "99999999999999999999"}, "from 1 to 256"),
    ({"shard": "1/99999999999999999999"}, "shard must be I/N with 1 <= I <= N <= 256"),
    ({"shard": "1/257"}, "shard must be I/N with 1 <= I <= N <= 256"),
    ({"fail_on_error": "yes"}, "fail-on-error must be true or false, not 'yes'"),
    ({"upload": "yes"}, "upload must be true or false, not 'yes'"),
    ({"allow_errors": "True"}, "allow-errors must be true or false, not 'True'"),
    ({"retention_days": "0"}, "retention-days must be a whole number of days from 1 to 90, not '0'"),
    ({"retention_days": "91"}, "retention-days must be"),
    ({"retention_days": "5d"}, "retention-days must be"),
    ({"artifact_name": "a\nb"}, "artifact-name must be non-empty without"),
    ({"artifact_name": "a/b"}, "artifact-name must be non-empty without"),
    ({"artifact_name": "a:b"}, "artifact-name must be non-empty without"),
    ({"artifact_name": ""}, "artifact-name must be non-empty without"),
    ({"requirements": "reqs.txt\ncache-key=forged"}, "requirements must be one path without line breaks, not 'reqs.txt\n"),
    ({"environment_file": "env.yml\rsetup=none"}, "environment-file must be one path without line breaks"),
    ({"working_directory": "docs\nmode=list"}, "working-directory must be one path without line breaks"),
    ({"mode": "list", "shards": "2", "shard": "1/2"}, "shard is for mode: run"),
    ({"shard": "3/2"}, "shard must be I/N with 1 <= I <= N"),
    ({"shard": "0/2"}, "shard must be I/N with 1 <= I <= N"),
    ({"shard": "first"}, "not 'first'"),
    ({"conda_installer": "mamba"}, "conda-installer must be miniconda or micromamba, not 'mamba'"),
    ({"pixi_environment": "../x"}, "pixi-environment must be a pixi environment name"),
    ({"extras": "--index-url=http://x"}, "extras must be names separated by spaces"),
    ({"dependency_groups": "dev -e"}, "dependency-groups must be names separated by spaces"),
    ({"python_version": "3.12\nsetup=none"}, "python-version must be one path without line breaks"),
])
def test_bad_inputs_fail_with_an_annotation(plan, inputs, message):
    proc = plan.run(**inputs)
    assert proc.returncode == 1
    assert proc.stdout.startswith("::error title=notebook-ci invalid input::")
    assert len(proc.stdout.splitlines()) == 1  # a line break in an input is escaped, never a new line
    assert message.replace("\n", "%0A") in proc.stdout
    assert (plan.workspace.parent / "output").read_text() == ""  # nothing reaches $GITHUB_OUTPUT


@posix
def test_list_mode_needs_no_environment_and_keeps_durations_per_run(plan):
    (plan.workspace / "docs" / "environment.yml").write_text("dependencies: [python]\n")
    outputs = plan(mode="list", shards="3", working_directory="docs", setup="conda")
    assert outputs["mode"] == "list" and outputs["setup"] == "none" and outputs["environment-file"] == ""
    prefix = outputs["durations-prefix"]
    assert re.fullmatch(r"nbci-durations-Linux-[0-9a-f]{12}-", prefix)
    assert outputs["durations-dir"] == "/runner/temp/nbci-durations"
    # the branch's newest entry first, then any; saved under this run's key (commas are not allowed)
    assert outputs["durations-branch-prefix"] == prefix + "feature/x_y-"
    assert outputs["durations-key"] == outputs["durations-save-key"] == prefix + "feature/x_y-42-list"
    assert plan(mode="list", shards="3", cache="false")["durations-dir"] == ""


@posix
def test_a_shard_restores_its_list_jobs_entry_exactly_and_saves_its_own(plan):
    listed = plan(mode="list", shards="2", notebooks="a.ipynb  b/*.ipynb", exclude="b/skip.ipynb")
    outputs = plan(shard=" 2/2 ", notebooks="b/*.ipynb\na.ipynb\n", exclude="b/skip.ipynb")
    assert outputs["mode"] == "run" and outputs["shard-dir"] == "shard-2-of-2"
    assert outputs["artifact-name"] == "executed-notebooks-shard-2-of-2"
    assert outputs["durations-key"] == listed["durations-key"]  # the same set of notebooks, however written
    assert outputs["durations-branch-prefix"] == outputs["durations-prefix"] == ""  # no fallback
    assert outputs["durations-save-key"] == listed["durations-prefix"] + "feature/x_y-42-2-shard-2-of-2"
    other = plan(mode="list", shards="2", notebooks="a.ipynb")
    assert other["durations-key"] != listed["durations-key"]  # another set of notebooks
    assert plan(shard="1/2", artifact_name="nb")["artifact-name"] == "nb-shard-1-of-2"
    assert plan(shard="1/2", cache="false")["durations-save-key"] == ""


@posix
def test_a_run_without_shards_restores_the_newest_durations_and_saves_its_own(plan):
    outputs = plan(notebooks="a.ipynb b/*.ipynb")
    listed = plan(mode="list", shards="2", notebooks="b/*.ipynb a.ipynb")
    prefix = listed["durations-prefix"]
    assert outputs["durations-dir"] == "/runner/temp/nbci-durations" and outputs["shard-dir"] == ""
    # restores like a list job of the same notebooks (its entries or earlier runs'), never its own key
    assert outputs["durations-prefix"] == prefix
    assert outputs["durations-branch-prefix"] == listed["durations-branch-prefix"]
    assert outputs["durations-key"] == outputs["durations-save-key"] == prefix + "feature/x_y-42-2-run"
    assert plan(cache="false")["durations-dir"] == ""


@posix
def test_list_writes_the_matrix_output_and_keeps_a_copy_with_the_durations(tmp_path: Path):
    engine = tmp_path / "nbci"
    engine.write_text('#!/bin/sh\necho "$@" > "$(dirname "$0")/args"\n'
                      'echo \'[{"shard": "1/2", "notebooks": ["a.ipynb"]}, {"shard": "2/2", "notebooks": []}]\'\n')
    engine.chmod(0o755)
    output = tmp_path / "output"
    durations = tmp_path / "durations" / "new"
    env = {"NBCI_ENGINE": str(engine), "NBCI_SHARDS": "2", "NBCI_DURATIONS": str(durations), "GITHUB_OUTPUT": str(output)}
    proc = run_script("list.sh", tmp_path, env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "args").read_text().split() == ["list", "--shards", "2"]
    matrix = parse_output_file(output.read_text())["matrix"]
    assert json.loads(matrix)[0] == {"shard": "1/2", "notebooks": ["a.ipynb"]} and "\n" not in matrix
    assert json.loads((durations / "matrix.json").read_text()) == json.loads(matrix)
    engine.write_text("#!/bin/sh\necho 'nbci: no notebooks match' >&2\nexit 2\n")
    assert run_script("list.sh", tmp_path, {**env, "NBCI_DURATIONS": ""}).returncode == 2


@posix
def test_in_env_runs_python_as_the_setup_python(tmp_path: Path):
    proc = run_script("in_env.sh", tmp_path, {"NBCI_PYTHON": sys.executable},
                      "python", "-c", "import sys; print(sys.executable)")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == sys.executable


@posix
def test_in_env_activates_a_conda_environment(tmp_path: Path):
    conda = tmp_path / "conda"
    env_bin = conda / "envs" / "nbci-user" / "bin"
    env_bin.mkdir(parents=True)
    (env_bin / "python").symlink_to(sys.executable)
    (conda / "etc" / "profile.d").mkdir(parents=True)
    (conda / "etc" / "profile.d" / "conda.sh").write_text(
        'conda() { [ "$1" = activate ] && export CONDA_PREFIX="$CONDA/envs/$2" PATH="$CONDA/envs/$2/bin:$PATH"; }\n')
    proc = run_script("in_env.sh", tmp_path, {"CONDA": str(conda), "NBCI_CONDA_ENV": "nbci-user",
                                              "NBCI_PYTHON": "/ignored/with/conda"},
                      "python", "-c", "import os, sys; print(os.environ['CONDA_PREFIX'], sys.argv[0])")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[0] == str(conda / "envs" / "nbci-user")
    exe = run_script("in_env.sh", tmp_path, {"CONDA": str(conda), "NBCI_CONDA_ENV": "nbci-user"},
                     "bash", "-c", "command -v python")
    assert exe.stdout.strip() == str(env_bin / "python")


@posix
def test_in_env_without_python_says_so(tmp_path: Path):
    proc = subprocess.run(["/bin/bash", str(ACTION / "in_env.sh"), "python", "-V"], cwd=tmp_path,
                          env={"PATH": str(tmp_path)}, capture_output=True, text=True)
    assert proc.returncode == 1
    assert "no python or python3 on PATH" in proc.stdout


@posix
def test_in_env_runs_other_commands_unchanged(tmp_path: Path):
    proc = run_script("in_env.sh", tmp_path, {}, "bash", "-c", 'printf "%s|" "$@"', "_", "a b", "python")
    assert proc.stdout == "a b|python|"


def test_uv_environment_sets_the_cache_and_drops_empty_uv_settings():
    env = common.uv_environment({"UV_INDEX_URL": "", "UV_PYTHON": "3.12", "NBCI_UV_CACHE_DIR": "/c", "PATH": "/bin"})
    assert env["UV_CACHE_DIR"] == "/c" and env["UV_PYTHON"] == "3.12" and env["UV_NO_PROGRESS"] == "1"
    assert "UV_INDEX_URL" not in env
    assert "UV_CACHE_DIR" not in common.uv_environment({"NBCI_UV_CACHE_DIR": ""})


def test_engine_refuses_an_unknown_installer(tmp_path: Path):
    with pytest.raises(common.StepError, match="installer must be uv or pip"):
        setup_engine.install_engine({"NBCI_ENGINE_DIR": str(tmp_path), "NBCI_INSTALLER": "conda"})
    with pytest.raises(common.StepError, match="NBCI_ENGINE_DIR is not set"):
        setup_engine.install_engine({})


def test_install_commands_target_this_python():
    packages = ["-r", "requirements.txt", "ipykernel"]
    assert setup_kernel.install_command({"NBCI_INSTALLER": "uv", "NBCI_UV": "/x/uv"}, packages) == [
        "/x/uv", "pip", "install", "--python", sys.executable, *packages]
    assert setup_kernel.install_command({"NBCI_INSTALLER": "pip"}, packages)[:4] == [
        sys.executable, "-m", "pip", "install"]
    with pytest.raises(common.StepError, match="NBCI_UV is not set"):
        setup_kernel.install_command({"NBCI_INSTALLER": "uv"}, packages)


def test_setup_none_needs_ipykernel_already_there(monkeypatch):
    monkeypatch.setattr(setup_kernel, "missing", setup_kernel.kernel_packages)  # nothing installed
    with pytest.raises(common.StepError, match="ipykernel is not installed for .*setup: python"):
        setup_kernel.prepare_environment({"NBCI_SETUP": "none"})


@posix
def test_setup_conda_installs_a_missing_ipykernel_with_conda(monkeypatch, tmp_path: Path):
    monkeypatch.setattr(setup_kernel, "missing", setup_kernel.kernel_packages)  # nothing installed
    log = tmp_path / "conda.log"
    conda = tmp_path / "conda"
    conda.write_text(f'#!/bin/sh\necho "$@" > "{log}"\n')
    conda.chmod(0o755)
    setup_kernel.prepare_environment({"NBCI_SETUP": "conda", "CONDA_EXE": str(conda)})
    assert log.read_text().split() == ["install", "--yes", "--prefix", sys.prefix, "ipykernel"]


def test_requirements_install_from_the_files_folder(monkeypatch, tmp_path: Path):
    calls = []
    monkeypatch.setattr(setup_kernel, "run", lambda command, env=None, cwd=None: calls.append((command, cwd)))
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "requirements.txt").write_text("./local-package\n")
    monkeypatch.chdir(tmp_path)
    setup_kernel.prepare_environment({"NBCI_SETUP": "python", "NBCI_INSTALLER": "pip",
                                      "NBCI_REQUIREMENTS": "docs/requirements.txt"})
    [(command, cwd)] = calls
    assert command[-3:] == ["-r", "requirements.txt", "ipykernel"] and cwd == tmp_path / "docs"


def test_register_kernel_points_at_this_python(tmp_path: Path, capsys):
    output = tmp_path / "output"
    environ = {"NBCI_SETUP": "none", "NBCI_KERNEL_DIR": str(tmp_path / "kernel"), "GITHUB_OUTPUT": str(output)}
    assert common.main("Prepare", setup_kernel.register_kernel, environ) == 0
    outputs = parse_output_file(output.read_text())
    spec = json.loads((tmp_path / "kernel" / "share" / "jupyter" / "kernels" / "nbci-user" / "kernel.json").read_text())
    assert spec["argv"][0] == sys.executable
    assert outputs["kernel"] == "nbci-user" and outputs["python"] == sys.executable
    assert outputs["jupyter-path"].split(os.pathsep) == [str(tmp_path / "kernel" / "share" / "jupyter"),
                                                        str(Path(sys.prefix) / "share" / "jupyter")]
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "::group::Prepare" and lines[-1] == "::endgroup::"


def test_kernel_input_overrides_the_registered_kernel(tmp_path: Path):
    outputs = setup_kernel.register_kernel({"NBCI_SETUP": "none", "NBCI_KERNEL_DIR": str(tmp_path),
                                            "NBCI_KERNEL_INPUT": "ir"})
    assert outputs["kernel"] == "ir"


def test_a_failing_step_reports_an_annotation_and_writes_no_outputs(tmp_path: Path, capsys):
    output = tmp_path / "output"

    def broken(environ):
        raise common.StepError("pip failed: exit 1\nsee above")

    assert common.main("Install things", broken, {"GITHUB_OUTPUT": str(output)}) == 1
    assert not output.exists()
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == "::error title=notebook-ci%3A install things failed::pip failed: exit 1%0Asee above"


def test_the_engine_lock_pins_every_dependency_with_hashes():
    text = (ROOT / "action" / "requirements.txt").read_text()
    entries = re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)( ;[^\\\n]*)? \\\n((?:    --hash=sha256:[0-9a-f]{64}(?: \\)?\n)+)",
                         text, re.MULTILINE)
    requirement_lines = [line for line in text.splitlines() if line and not line.startswith((" ", "#"))]
    assert len(entries) == len(requirement_lines) > 10  # every requirement: exact version and hashes
    names = {name.lower().replace("_", "-") for name, *_ in entries}
    block = re.search(r"^dependencies = \[(.*?)^\]", (ROOT / "pyproject.toml").read_text(), re.MULTILINE | re.DOTALL)
    declared = re.findall(r'"([^"]+)"', block.group(1))
    assert len(declared) >= 4
    for requirement in declared + ["uv", "setuptools"]:
        assert re.split(r"[<>=!~ ;\[]", requirement)[0].lower().replace("_", "-") in names, requirement


def test_the_engine_installs_from_the_lock_with_hash_checking(tmp_path: Path):
    python, uv = tmp_path / "python", tmp_path / "uv"
    for commands in (setup_engine.install_commands(python, None, ROOT), setup_engine.install_commands(python, uv, ROOT)):
        lock, engine = commands
        assert lock[-3:] == ["--require-hashes", "-r", setup_engine.LOCK]
        assert engine[-3:] == ["--no-deps", "--no-build-isolation", ROOT]
    assert setup_engine.install_commands(python, uv, ROOT)[0][:5] == [uv, "pip", "install", "--python", python]


@posix
def test_release_check_accepts_only_the_engines_version_with_a_changelog_entry():
    script = ROOT / ".github" / "release" / "check.sh"
    version = re.search(r'^__version__ = "(.+)"$', (ROOT / "entrypoint" / "nbci" / "__init__.py").read_text(),
                        re.MULTILINE).group(1)
    ok = subprocess.run(["bash", str(script), f"v{version}"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "### Added" in ok.stdout and "## [" not in ok.stdout  # its own section only
    for tag, message in ((f"v{version}.1", "is not vX.Y.Z"), ("v0.0.1", "does not match the engine's version"),
                         (version, "is not vX.Y.Z")):
        bad = subprocess.run(["bash", str(script), tag], capture_output=True, text=True)
        assert bad.returncode == 1 and message in bad.stderr, tag


@posix
def test_the_execution_cache_is_kept_per_branch_and_shard_and_skipped_on_schedule(plan):
    outputs = plan(notebooks="a.ipynb b/*.ipynb")
    prefix = outputs["exec-key"][:-len("feature/x_y-42-2")]
    assert re.fullmatch(r"nbci-exec-Linux-[0-9a-f]{12}-", prefix)
    assert outputs["exec-restore-keys"].split("\n") == [prefix + "feature/x_y-", prefix + "main-"]
    sharded = plan(notebooks="a.ipynb b/*.ipynb", shard="2/3")
    assert sharded["exec-key"] == prefix + "shard-2-of-3-feature/x_y-42-2"
    assert plan(execution_cache="false")["exec-cache-dir"] == ""
    assert plan(mode="list", shards="2")["exec-cache-dir"] == ""
    # the runner names the event in GITHUB_EVENT_NAME
    env = {"INPUT_EXECUTION_CACHE": "true", "GITHUB_EVENT_NAME": "schedule", "GITHUB_OUTPUT": str(plan.workspace.parent / "output"),
           "RUNNER_TEMP": "/runner/temp", "GITHUB_ACTION_PATH": str(ROOT), "RUNNER_OS": "Linux", "GITHUB_RUN_ID": "42"}
    (plan.workspace.parent / "output").write_text("")
    assert run_script("plan.sh", plan.workspace, env).returncode == 0
    assert parse_output_file((plan.workspace.parent / "output").read_text())["exec-cache-dir"] == ""


@posix
def test_the_verdict_step_names_the_count_and_fails():
    import yaml

    [step] = [s for s in yaml.safe_load((ROOT / "action.yml").read_text())["runs"]["steps"] if s.get("id") == "verdict"]
    done = subprocess.run(["bash", "-c", step["run"]], env={"FAILED": "1", "TOTAL": "2", "PATH": os.environ["PATH"]},
                          capture_output=True, text=True)
    assert done.returncode == 1
    assert done.stdout == "::error title=notebook-ci::1 of 2 notebooks did not pass (fail-on-error: true)\n"
    env = {"FAILED": "0", "TOTAL": "2", "COVERAGE": "62.50", "FAIL_UNDER": "80", "PATH": os.environ["PATH"]}
    below = subprocess.run(["bash", "-c", step["run"]], env=env, capture_output=True, text=True)
    assert below.returncode == 1
    assert below.stdout == "::error title=notebook-ci::coverage 62.50% is below coverage-fail-under 80 (fail-on-error: true)\n"


def test_the_engine_gets_coverage_from_its_own_hashed_lock_when_asked(tmp_path: Path):
    assert setup_engine.locks({}) == [setup_engine.LOCK]
    assert setup_engine.locks({"NBCI_COVERAGE": "true", "NBCI_TEXT_NOTEBOOKS": "true"}) == [
        setup_engine.TEXT_LOCK, setup_engine.COVERAGE_LOCK]
    lock, _ = setup_engine.install_commands(tmp_path / "python", None, ROOT, setup_engine.locks({"NBCI_COVERAGE": "true"}))
    assert lock[-5:] == ["--require-hashes", "-r", setup_engine.LOCK, "-r", setup_engine.COVERAGE_LOCK]
    text = setup_engine.COVERAGE_LOCK.read_text()
    pinned = re.findall(r"^(coverage)==(\S+) ;[^\\\n]* \\\n(?:    --hash=sha256:[0-9a-f]{64}(?: \\)?\n)+", text, re.MULTILINE)
    requirement_lines = [line for line in text.splitlines() if line and not line.startswith((" ", "#"))]
    assert len(pinned) == len(requirement_lines) >= 1  # coverage alone, exact versions with hashes
    extra = re.search(r'^coverage = \["coverage>=(\d+)', (ROOT / "pyproject.toml").read_text(), re.MULTILINE)
    assert all(int(version.split(".")[0]) >= int(extra.group(1)) for _, version in pinned)  # within nbci[coverage]
