"""setup: auto reads a repository's environment in repo2docker's order (action/detect.sh, plan.sh),
and setup_kernel.py / apt.sh build what it found."""

from __future__ import annotations

import importlib.util
import itertools
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, FrozenSet, List, Tuple

import pytest
from test_action_scripts import ACTION, ROOT, Plan, plan, posix, run_script  # noqa: F401  (plan: fixture)

import common  # noqa: E402  (on sys.path through test_action_scripts)
import setup_kernel  # noqa: E402

# Each layout as the files it needs and the pyproject.toml tables it needs, in the order detect.sh
# tries them: the first one present decides, whatever else the folder holds.
MARKERS: List[Tuple[str, str, FrozenSet[str], FrozenSet[str]]] = [
    # name, the layout it decides, files, pyproject.toml tables
    ("environment.yml", "conda", frozenset({"environment.yml"}), frozenset()),
    ("pixi.toml", "pixi", frozenset({"pixi.toml"}), frozenset()),
    ("[tool.pixi]", "pixi", frozenset(), frozenset({"tool.pixi.workspace"})),
    ("uv.lock", "uv", frozenset({"uv.lock"}), frozenset({"project"})),
    ("requirements.txt", "requirements", frozenset({"requirements.txt"}), frozenset()),
    ("[project]+[build-system]", "project", frozenset(), frozenset({"project", "build-system"})),
    ("setup.py", "project", frozenset({"setup.py"}), frozenset()),
]
DECIDING = {"environment.yml": "environment.yml", "pixi.toml": "pixi.toml", "[tool.pixi]": "pyproject.toml",
            "uv.lock": "uv.lock", "requirements.txt": "requirements.txt",
            "[project]+[build-system]": "pyproject.toml", "setup.py": "setup.py"}


def write_layout(folder: Path, names: Tuple[str, ...]) -> None:
    """The files of the named markers in ``folder``; their pyproject.toml tables in one file."""
    folder.mkdir(parents=True, exist_ok=True)
    tables = set()
    for name, _, files, needed in MARKERS:
        if name in names:
            tables |= needed
            for file in files:
                (folder / file).write_text("# " + name + "\n")
    if tables:
        (folder / "pyproject.toml").write_text("".join(f"[{t}]\nx = 1\n" for t in sorted(tables)))


def detect(folder: Path) -> Dict[str, str]:
    proc = subprocess.run(["bash", str(ACTION / "detect.sh"), "."], cwd=folder, capture_output=True, text=True)
    pairs = dict(line.split("=", 1) for line in proc.stdout.splitlines())
    return {**pairs, "exit": str(proc.returncode)}


def expected(names: Tuple[str, ...], at: str = "") -> Tuple[str, str]:
    first = next((m for m in MARKERS if m[0] in names), None)
    return ("none", "") if first is None else (first[1], at + DECIDING[first[0]])


ALL_SUBSETS = [combo for size in range(len(MARKERS) + 1) for combo in itertools.combinations([m[0] for m in MARKERS], size)]


@posix
def test_every_combination_of_layouts_is_decided_by_the_first_in_repo2dockers_order(tmp_path: Path):
    assert len(ALL_SUBSETS) == 2 ** len(MARKERS)
    for index, names in enumerate(ALL_SUBSETS):
        folder = tmp_path / str(index)
        write_layout(folder, names)
        found = detect(folder)
        assert (found["layout"], found["file"]) == expected(names), names
        assert found["source"] == "." and found["exit"] == "0"


@posix
@pytest.mark.parametrize("binder", ["binder", ".binder"])
def test_a_binder_folder_is_the_only_one_searched(tmp_path: Path, binder: str):
    write_layout(tmp_path, tuple(m[0] for m in MARKERS))  # the root declares everything: ignored
    (tmp_path / "runtime.txt").write_text("python-3.8\n")
    (tmp_path / binder).mkdir()
    assert {k: detect(tmp_path)[k] for k in ("source", "layout", "file", "runtime")} == {
        "source": binder, "layout": "none", "file": "", "runtime": ""}
    for index, names in enumerate(ALL_SUBSETS[1:len(MARKERS) + 1] + ALL_SUBSETS[-3:]):
        folder = tmp_path / binder
        for child in folder.iterdir():
            child.unlink()
        write_layout(folder, names)
        found = detect(tmp_path)
        assert (found["layout"], found["file"]) == expected(names, at=binder + "/"), names


@posix
def test_runtime_apt_and_post_build_are_read_beside_the_layout(tmp_path: Path):
    binder = tmp_path / "binder"
    binder.mkdir()
    (binder / "runtime.txt").write_text("python-3.11\n")
    (binder / "apt.txt").write_text("graphviz\n")
    (binder / "postBuild").write_text("echo built\n")
    (binder / "pixi.toml").write_text("[workspace]\n")
    (binder / "pixi.lock").write_text("version: 6\n")
    assert detect(tmp_path) == {"source": "binder", "layout": "pixi", "file": "binder/pixi.toml",
                                "lock": "binder/pixi.lock", "runtime": "3.11", "apt": "binder/apt.txt",
                                "post-build": "binder/postBuild", "exit": "0"}
    (binder / "runtime.txt").write_text("python-3.10.4")
    assert detect(tmp_path)["runtime"] == "3.10.4"
    (binder / "runtime.txt").write_text("r-4.1-2021-10-01\n")
    found = detect(tmp_path)
    assert found["exit"] == "1" and found["error"] == (
        "binder/runtime.txt must read python-X.Y (e.g. python-3.11), not 'r-4.1-2021-10-01'")


@pytest.fixture
def layouts(tmp_path: Path) -> Plan:
    """plan.sh on a workspace whose working directory is docs/."""
    (tmp_path / "workspace" / "docs").mkdir(parents=True)
    return Plan(tmp_path / "workspace")


def plan_log(layouts: Plan, **inputs: str) -> Tuple[Dict[str, str], str]:
    proc = layouts.run(working_directory="docs", **inputs)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    from test_workflow_commands import parse_output_file
    return parse_output_file((layouts.workspace.parent / "output").read_text()), proc.stdout


PICKED = ["setup", "install", "project-dir", "requirements", "environment-file", "pixi-manifest", "pixi-locked",
          "python-version"]


@posix
@pytest.mark.parametrize("files, picked, log", [
    ({}, ["python", "none", "", "", "", "", "false", "3.12"],
     "nothing in docs declared an environment (no binder/, environment.yml, pixi.toml, uv.lock, requirements.txt, "
     "pyproject.toml or setup.py): Python 3.12 with ipykernel alone"),
    ({"uv.lock": "", "pyproject.toml": "[project]\n", "requirements.txt": "six\n"},
     ["python", "uv-sync", "docs", "", "", "", "false", "3.12"], "setup: auto chose uv (uv sync --locked, from docs/uv.lock)"),
    ({"setup.py": ""}, ["python", "project", "docs", "", "", "", "false", "3.12"],
     "setup: auto chose python (pip install . of the project in docs/setup.py)"),
    ({"binder/requirements.txt": "six\n", "binder/runtime.txt": "python-3.11\n", "requirements.txt": "pandas\n"},
     ["python", "requirements", "", "docs/binder/requirements.txt", "", "", "false", "3.11"],
     "setup: auto chose python (the requirements in docs/binder/requirements.txt)"),
    ({".binder/environment.yml": "dependencies: [python]\n"},
     ["conda", "none", "", "", "docs/.binder/environment.yml", "", "false", "3.12"],
     "setup: auto chose conda (the environment from docs/.binder/environment.yml)"),
    ({"pixi.toml": "[workspace]\n", "pixi.lock": ""},
     ["pixi", "none", "", "", "", "docs/pixi.toml", "true", "3.12"],
     "setup: auto chose pixi (the default environment of docs/pixi.toml, locked by docs/pixi.lock)"),
])
def test_the_plan_names_the_deciding_file_and_what_it_builds(layouts: Plan, files, picked, log):
    for name, text in files.items():
        (layouts.workspace / "docs" / name).parent.mkdir(exist_ok=True)
        (layouts.workspace / "docs" / name).write_text(text)
    outputs, stdout = plan_log(layouts)
    assert [outputs[k] for k in PICKED] == picked
    assert f"notebook-ci: {log}\n" in stdout


@posix
def test_explicit_inputs_win_over_what_auto_finds(layouts: Plan):
    docs = layouts.workspace / "docs"
    for name in ("environment.yml", "reqs.txt", "env.yml", "uv.lock", "pyproject.toml"):
        (docs / name).write_text("x\n")
    assert plan_log(layouts, requirements="reqs.txt")[0]["requirements"] == "docs/reqs.txt"
    assert plan_log(layouts, environment_file="env.yml")[0]["environment-file"] == "docs/env.yml"
    outputs, stdout = plan_log(layouts, setup="python")  # as before: the requirements file, no uv.lock
    assert outputs["install"] == "requirements" and "setup: auto chose" not in stdout
    (docs / "runtime.txt").write_text("python-3.10\n")
    (docs / "environment.yml").unlink()
    outputs, stdout = plan_log(layouts, python_version="3.13")
    assert outputs["python-version"] == "3.13" and "from runtime.txt" not in stdout
    assert plan_log(layouts)[0]["python-version"] == "3.10"


@posix
def test_apt_and_post_build_reach_their_steps(layouts: Plan):
    docs = layouts.workspace / "docs"
    (docs / "apt.txt").write_text("graphviz\n")
    (docs / "postBuild").write_text("echo hi\n")
    outputs, stdout = plan_log(layouts)
    assert outputs["apt-file"] == "docs/apt.txt" and outputs["post-build"] == str(docs.resolve() / "postBuild")
    assert "notebook-ci: docs/apt.txt lists Debian packages: apt-get installs them" in stdout
    assert plan_log(layouts, setup="python")[0]["post-build"] == ""  # extras are read with setup: auto only
    (docs / "requirements.txt").write_text("six\n")
    (docs / "environment.yml").write_text("dependencies: [python]\n")
    assert plan_log(layouts)[0]["setup"] == "conda"
    off = plan_log(layouts, environment_file="")[0]  # an empty file input turns its layout off
    assert off["setup"] == "python" and off["requirements"] == "docs/requirements.txt"
    assert plan_log(layouts, environment_file="", requirements="")[0]["install"] == "none"


@posix
def test_micromamba_builds_the_same_environment_under_its_own_root(layouts: Plan):
    (layouts.workspace / "docs" / "environment.yml").write_text("dependencies: [python]\n")
    miniconda = plan_log(layouts)[0]
    micromamba = plan_log(layouts, conda_installer="micromamba")[0]
    assert micromamba["conda-env"] == "/runner/temp/nbci-micromamba/envs/nbci-conda-env"
    assert miniconda["conda-env"] == "/runner/temp/nbci-conda-env" and micromamba["conda-installer"] == "micromamba"
    assert micromamba["env-key"] == miniconda["env-key"] != ""  # the environment cache is keyed the same way


@posix
def test_pixi_runs_the_kernel_from_the_named_environment(layouts: Plan):
    (layouts.workspace / "docs" / "pyproject.toml").write_text("[project]\nname = 'x'\n[tool.pixi.workspace]\n")
    outputs = plan_log(layouts, pixi_environment="py311")[0]
    assert outputs["setup"] == "pixi" and outputs["pixi-manifest"] == "docs/pyproject.toml"
    assert outputs["env-python"] == str((layouts.workspace / "docs").resolve() / ".pixi/envs/py311/bin/python")
    assert outputs["python-env"] == "" and outputs["pixi-locked"] == "false"


@posix
def test_both_binder_folders_are_one_line_error(layouts: Plan):
    (layouts.workspace / "docs" / "binder").mkdir()
    (layouts.workspace / "docs" / ".binder").mkdir()
    proc = layouts.run(working_directory="docs")
    assert proc.returncode == 1
    assert proc.stdout == ("::error title=notebook-ci invalid input::docs/: both binder/ and .binder/: keep one "
                           "(repo2docker reads only one of them)\n")
    assert (layouts.workspace.parent / "output").read_text() == ""


def fake_tools(bin_dir: Path, log: Path, system: str = "Linux") -> Dict[str, str]:
    """uname, apt-get and sudo that record their arguments; the environment to find them."""
    bin_dir.mkdir()
    for name, body in [("uname", f'echo {system}'), ("apt-get", f'echo "apt-get $*" >> "{log}"'),
                       ("sudo", f'echo "sudo $1" >> "{log}"; shift; "$@"'), ("id", "echo 1000")]:
        (bin_dir / name).write_text(f"#!/bin/bash\n{body}\n")
        (bin_dir / name).chmod(0o755)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}"}


@posix
def test_apt_installs_the_listed_packages_with_sudo(tmp_path: Path):
    log = tmp_path / "log"
    (tmp_path / "apt.txt").write_text("# tools\ngraphviz\n\nlibgl1  # for opencv\n")
    proc = run_script("apt.sh", tmp_path, fake_tools(tmp_path / "bin", log), "apt.txt")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert log.read_text().splitlines() == [
        "sudo --non-interactive", "apt-get update --quiet", "sudo --non-interactive",
        "apt-get install --yes --quiet --no-install-recommends -- graphviz libgl1"]


@posix
@pytest.mark.parametrize("system, text, message", [
    ("Darwin", "graphviz\n", "apt.txt lists Debian packages, and this runner (Darwin) has no apt-get: run the job on ubuntu-latest"),
    ("Linux", "-o APT::Update::Pre-Invoke::=evil\n", "apt.txt: '-oAPT::Update::Pre-Invoke::=evil' is not a Debian package name"),
])
def test_apt_refuses_other_systems_and_options_in_one_line(tmp_path: Path, system: str, text: str, message: str):
    log = tmp_path / "log"
    (tmp_path / "apt.txt").write_text(text)
    proc = run_script("apt.sh", tmp_path, fake_tools(tmp_path / "bin", log, system), "apt.txt")
    assert proc.returncode == 1 and not log.exists()
    assert proc.stdout.startswith("::error title=notebook-ci apt.txt::") and message in proc.stdout
    assert len(proc.stdout.splitlines()) == 1


def recorded_runs(monkeypatch) -> List[Tuple[List[str], Dict[str, str], Path]]:
    calls: List[Tuple[List[str], Dict[str, str], Path]] = []
    monkeypatch.setattr(setup_kernel, "run", lambda command, env=None, cwd=None: calls.append(
        ([str(c) for c in command], dict(env or {}), cwd)))
    return calls


def test_uv_lock_is_synced_into_this_environment_then_ipykernel_added(monkeypatch, tmp_path: Path):
    calls = recorded_runs(monkeypatch)
    setup_kernel.prepare_environment({"NBCI_SETUP": "python", "NBCI_INSTALL": "uv-sync", "NBCI_UV": "/x/uv",
                                      "NBCI_PROJECT_DIR": str(tmp_path), "NBCI_EXTRAS": "plot",
                                      "NBCI_DEPENDENCY_GROUPS": "docs  test"})
    [(sync, env, cwd), (install, _, _)] = calls
    assert sync == ["/x/uv", "sync", "--locked", "--python", sys.executable, "--extra", "plot",
                    "--group", "docs", "--group", "test"]
    assert env["UV_PROJECT_ENVIRONMENT"] == sys.prefix and env["UV_PYTHON_DOWNLOADS"] == "never"
    assert cwd == tmp_path.resolve() and install == ["/x/uv", "pip", "install", "--python", sys.executable, "ipykernel"]


def test_a_project_is_installed_with_its_extras_and_groups(monkeypatch, tmp_path: Path):
    calls = recorded_runs(monkeypatch)
    environ = {"NBCI_SETUP": "python", "NBCI_INSTALL": "project", "NBCI_INSTALLER": "pip",
               "NBCI_PROJECT_DIR": str(tmp_path), "NBCI_EXTRAS": "plot io", "NBCI_DEPENDENCY_GROUPS": "docs"}
    setup_kernel.prepare_environment(environ)
    setup_kernel.prepare_environment({**environ, "NBCI_INSTALL": "none", "NBCI_REQUIREMENTS": "requirements.txt"})
    [(project, _, cwd), (alone, _, alone_cwd)] = calls
    assert project[-4:] == [".[plot,io]", "--group", "docs", "ipykernel"] and cwd == tmp_path.resolve()
    assert project[:4] == [sys.executable, "-m", "pip", "install"]
    assert alone[-1] == "ipykernel" and "-r" not in alone and alone_cwd is None  # nothing declared: ipykernel alone


@pytest.mark.parametrize("setup, message", [
    ("pixi", "ipykernel is not in the pixi environment of .*: add it to the manifest \\(pixi add ipykernel\\)"),
    ("none", "in a job container: add `RUN python -m pip install ipykernel` to the image"),
])
def test_a_missing_ipykernel_says_what_to_add(monkeypatch, setup: str, message: str):
    monkeypatch.setattr(setup_kernel, "missing", setup_kernel.kernel_packages)  # nothing installed
    with pytest.raises(common.StepError, match=message):
        setup_kernel.prepare_environment({"NBCI_SETUP": setup})


def test_micromamba_installs_a_missing_ipykernel(monkeypatch):
    monkeypatch.setattr(setup_kernel, "missing", setup_kernel.kernel_packages)  # nothing installed
    calls = recorded_runs(monkeypatch)
    setup_kernel.prepare_environment({"NBCI_SETUP": "conda", "NBCI_CONDA_INSTALLER": "micromamba", "MAMBA_EXE": "/m"})
    assert calls[0][0] == ["/m", "install", "--yes", "--prefix", sys.prefix, "--channel", "conda-forge", "ipykernel"]
    with pytest.raises(common.StepError, match="no micromamba was found"):
        monkeypatch.setenv("PATH", "")
        setup_kernel.prepare_environment({"NBCI_SETUP": "conda", "NBCI_CONDA_INSTALLER": "micromamba"})


def test_a_failed_command_quotes_its_last_error_lines_in_one_inert_annotation(tmp_path: Path, capsys):
    script = "import sys; sys.stderr.write('resolving\\n' * 9 + '::error::forged\\nerror: the lock needs updating\\n'); sys.exit(2)"

    def body(environ):
        common.run([sys.executable, "-c", script])

    assert common.main("Prepare the notebooks' environment", body, {}) == 1
    captured = capsys.readouterr()
    out = captured.out.splitlines()
    assert out[-1].startswith("::error title=notebook-ci%3A prepare the notebooks' environment failed::")
    message = out[-1].split("::", 2)[2]
    assert message.endswith("%0A:\u200b:error:\u200b:forged%0Aerror: the lock needs updating")
    assert message.count("resolving") == 3 and "exit code 2" in message
    assert [line for line in out if line.startswith("::") and "forged" in line] == [out[-1]]  # one annotation
    assert ":\u200b:error:\u200b:forged\n" in captured.err  # the whole output, in the log, inert


@pytest.mark.parametrize("install, extra", [
    ("requirements", {"NBCI_INSTALLER": "pip", "NBCI_REQUIREMENTS": "requirements.txt"}),
    ("project", {"NBCI_INSTALLER": "uv", "NBCI_UV": "/x/uv"}),
    ("uv-sync", {"NBCI_UV": "/x/uv"}),
])
def test_coverage_is_installed_next_to_ipykernel_with_the_same_installer(monkeypatch, tmp_path: Path, install, extra):
    calls = recorded_runs(monkeypatch)
    environ = {"NBCI_SETUP": "python", "NBCI_INSTALL": install, "NBCI_PROJECT_DIR": str(tmp_path), **extra}
    setup_kernel.prepare_environment({**environ, "NBCI_COVERAGE": "true"})
    setup_kernel.prepare_environment(environ)
    with_coverage, without = calls[len(calls) // 2 - 1][0], calls[-1][0]
    assert with_coverage[-2:] == ["ipykernel", "coverage"] and without[-1] == "ipykernel"
    assert with_coverage[:-1] == without  # the same installer, the same command, coverage added
    assert all("coverage" not in command for command, _, _ in calls if "sync" in command)  # the lock stays as it is


def test_conda_and_micromamba_install_only_the_missing_kernel_packages(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "coverage" else object())
    calls = recorded_runs(monkeypatch)
    setup_kernel.prepare_environment({"NBCI_SETUP": "conda", "NBCI_CONDA_INSTALLER": "micromamba", "MAMBA_EXE": "/m",
                                      "NBCI_COVERAGE": "true"})
    setup_kernel.prepare_environment({"NBCI_SETUP": "conda", "CONDA_EXE": "/c", "NBCI_COVERAGE": "true"})
    setup_kernel.prepare_environment({"NBCI_SETUP": "conda", "CONDA_EXE": "/c"})  # ipykernel is there: nothing
    assert [command for command, _, _ in calls] == [
        ["/m", "install", "--yes", "--prefix", sys.prefix, "--channel", "conda-forge", "coverage"],
        ["/c", "install", "--yes", "--prefix", sys.prefix, "coverage"]]


@pytest.mark.parametrize("setup, message", [
    ("pixi", "coverage is not in the pixi environment of .*\\(pixi add coverage\\)"),
    ("none", "coverage is not installed for .*`RUN python -m pip install coverage`"),
])
def test_a_missing_coverage_says_what_to_add(monkeypatch, setup: str, message: str):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "coverage" else object())
    setup_kernel.prepare_environment({"NBCI_SETUP": setup})  # without coverage: it is not needed
    with pytest.raises(common.StepError, match=message):
        setup_kernel.prepare_environment({"NBCI_SETUP": setup, "NBCI_COVERAGE": "true"})


def test_a_restored_environment_without_coverage_gets_it(monkeypatch, tmp_path: Path):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "coverage" else object())
    calls = recorded_runs(monkeypatch)
    environ = {"NBCI_SETUP": "python", "NBCI_INSTALLER": "pip", "NBCI_ENV_RESTORED": "true"}
    setup_kernel.prepare_environment(environ)  # ipykernel is there: nothing to install
    setup_kernel.prepare_environment({**environ, "NBCI_COVERAGE": "true"})
    [(command, _, _)] = calls
    assert command[-2:] == ["ipykernel", "coverage"]


RUNNER_FILES = ("GITHUB_ENV", "GITHUB_OUTPUT", "GITHUB_PATH", "GITHUB_STEP_SUMMARY")
HOSTILE = """echo "::warning title=spoofed::x"
echo "##[error]forged"
echo "::stop-commands::x" >&2
for name in GITHUB_ENV GITHUB_OUTPUT GITHUB_PATH GITHUB_STEP_SUMMARY; do
  [ -z "${!name:-}" ] || echo "BASH_ENV=/tmp/evil.sh" >> "${!name}"
done
env | grep -q '^ACTIONS_' && echo "token seen" >> tokens
echo done > ran
"""


def runner_files(tmp_path: Path) -> Dict[str, str]:
    """The runner's command files (empty) and a token, as a step gets them."""
    files = {name: tmp_path / name.lower() for name in RUNNER_FILES}
    for path in files.values():
        path.write_text("")
    return {**{name: str(path) for name, path in files.items()}, "ACTIONS_RUNTIME_TOKEN": "secret",
            "ACTIONS_ID_TOKEN_REQUEST_URL": "https://x", "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "secret"}


def assert_contained(proc: subprocess.CompletedProcess, tmp_path: Path, repo: Path) -> None:
    """The repository's code ran, wrote none of the runner's files, saw no token, issued no command."""
    assert (repo / "ran").exists() and not (repo / "tokens").exists()
    assert "BASH_ENV" not in "".join((tmp_path / name.lower()).read_text() for name in RUNNER_FILES)
    log = proc.stdout + proc.stderr
    assert "spoofed" in log and "forged" in log
    commands = [line for line in log.splitlines() if "::warning" in line or "::stop-commands" in line or "##[" in line]
    assert commands == [], commands


def post_build(tmp_path: Path, **selection: str) -> Tuple[Path, subprocess.CompletedProcess]:
    """A repository with a hostile binder/postBuild and one notebook, and post_build.py run on it."""
    repo = tmp_path / "repo"
    (repo / "binder").mkdir(parents=True)
    (repo / "binder" / "postBuild").write_text(HOSTILE)
    (repo / "a.ipynb").write_text('{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}')
    env = {**runner_files(tmp_path), "NBCI_PYTHON": sys.executable, "NBCI_ENGINE": str(Path(sys.executable).parent / "nbci"),
           "NBCI_DURATIONS": str(tmp_path / "none"), **selection}
    proc = run_script("in_env.sh", repo, env, "python", str(ACTION / "post_build.py"), str(repo / "binder" / "postBuild"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return repo, proc


@posix
def test_post_build_runs_without_the_runners_files_and_with_inert_output(tmp_path: Path):
    repo, proc = post_build(tmp_path, NBCI_SHARD="1/1")
    assert_contained(proc, tmp_path, repo)


@posix
@pytest.mark.parametrize("selection", [{"NBCI_EXCLUDE": "*.ipynb"}, {"NBCI_SHARD": "2/2"}])
def test_post_build_runs_only_when_notebooks_will(tmp_path: Path, selection: Dict[str, str]):
    repo, proc = post_build(tmp_path, **selection)
    assert not (repo / "ran").exists()
    assert "no notebook to run in this job: postBuild is not run" in proc.stdout


@posix
def test_install_time_code_runs_without_the_runners_files_and_with_inert_output(tmp_path: Path):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "setup.py").write_text("from setuptools import setup\nsetup(name='p')\n")
    installer = tmp_path / "uv"  # stands in for an install that runs the project's setup.py
    installer.write_text("#!/bin/bash\n" + HOSTILE)
    installer.chmod(0o755)
    env = {**runner_files(tmp_path), "NBCI_PYTHON": sys.executable, "NBCI_SETUP": "python",
           "NBCI_INSTALL": "project", "NBCI_PROJECT_DIR": str(repo), "NBCI_INSTALLER": "uv",
           "NBCI_UV": str(installer), "NBCI_KERNEL_DIR": str(tmp_path / "kernel")}
    proc = run_script("in_env.sh", repo, env, "python", str(ACTION / "setup_kernel.py"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert_contained(proc, tmp_path, repo)
    assert "kernel<<" in (tmp_path / "github_output").read_text()  # the step's own outputs still arrive


@posix
@pytest.mark.parametrize("name, target", [
    ("binder", "folder"), ("apt.txt", "file"), ("runtime.txt", "file"), ("requirements.txt", "file"),
    ("environment.yml", "file"), ("pyproject.toml", "file"), ("postBuild", "file"),
])
def test_a_link_out_of_the_repository_is_one_line_error_quoting_nothing(layouts: Plan, tmp_path: Path, name, target):
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = "python-3.9 SECRET-LINE"
    (outside / "file").write_text(secret + "\n")
    (outside / "folder").mkdir()
    (outside / "folder" / "apt.txt").write_text(secret + "\n")
    (layouts.workspace / name).symlink_to(outside / target)
    proc = layouts.run()
    assert proc.returncode == 1
    assert proc.stdout == (f"::error title=notebook-ci invalid input::{name} is a link out of the repository: "
                           "replace it with the file or folder itself (the action reads nothing outside the workspace)\n")


@posix
def test_a_link_inside_the_repository_is_read(layouts: Plan):
    (layouts.workspace / "deps").mkdir()
    (layouts.workspace / "deps" / "runtime.txt").write_text("python-3.10\n")
    (layouts.workspace / "runtime.txt").symlink_to("deps/runtime.txt")
    assert layouts()["python-version"] == "3.10"


@posix
def test_apt_refuses_a_link_out_of_the_repository(tmp_path: Path):
    log = tmp_path / "apt.log"
    (tmp_path / "repo").mkdir()
    (tmp_path / "repo" / "apt.txt").symlink_to("/etc/passwd")
    proc = run_script("apt.sh", tmp_path / "repo", fake_tools(tmp_path / "bin", log), "apt.txt")
    assert proc.returncode == 1 and not log.exists()
    assert proc.stdout.startswith("::error title=notebook-ci apt.txt::apt.txt is a link out of the repository")
    assert "root" not in proc.stdout and len(proc.stdout.splitlines()) == 1


@posix
def test_a_working_directory_that_starts_with_a_dash_is_read_as_a_path(tmp_path: Path, layouts: Plan):
    project = tmp_path / "-proj"
    project.mkdir()
    (project / "pyproject.toml").write_text("[project]\nname = 'x'\n[build-system]\nrequires = []\n")
    (project / "runtime.txt").write_text("python-3.11\n")
    proc = subprocess.run(["bash", str(ACTION / "detect.sh"), "-proj"], cwd=tmp_path, capture_output=True, text=True)
    found = dict(line.split("=", 1) for line in proc.stdout.splitlines())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (found["layout"], found["file"], found["runtime"]) == ("project", "-proj/pyproject.toml", "3.11")
    dashed = layouts.workspace / "-P"
    dashed.mkdir()
    (dashed / "postBuild").write_text("echo built\n")
    (dashed / "requirements.txt").write_text("six\n")
    run = layouts.run(working_directory="-P")
    assert run.returncode == 0, run.stdout + run.stderr
    from test_workflow_commands import parse_output_file
    outputs = parse_output_file((layouts.workspace.parent / "output").read_text())
    assert outputs["post-build"] == str(dashed.resolve() / "postBuild")


def test_the_action_hides_the_same_runner_files_as_the_engine():
    """action/common.py runs where the engine may not be importable, so it keeps its own copy of the list."""
    from nbci import kernels

    assert (common.HIDDEN_VARIABLES, common.HIDDEN_PREFIXES) == (kernels.HIDDEN_VARIABLES, kernels.HIDDEN_PREFIXES)
