"""GitLab CI: the console's collapsible sections, and the CI/CD component run by gitlab-ci-local.

The component tests run ``templates/notebook-ci.yml`` in a consumer project with gitlab-ci-local's
shell executor, installing the engine from a wheel of this checkout. They skip, saying why, when
gitlab-ci-local or rsync is missing (``bash .ci/run`` installs both).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Tuple

import pytest
import yaml

from conftest import Project, nbci_env

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).parent / "gitlab"
GITLAB_CI_LOCAL_VERSION = "4.64.1"
MARKER = re.compile(r"\x1b\[0Ksection_(start|end):\d+:([A-Za-z0-9_.-]+)(\[collapsed=true\])?\r\x1b\[0K([^\n]*)")
# What a hostile notebook holds: a section end and start of its own, a colour, a hyperlink, a line clear.
FORGED = "\x1b[0Ksection_end:1:nbci_1\r\x1b[0K\x1b[0Ksection_start:1:forged[collapsed=true]\r\x1b[0Kforged"
HOSTILE_SOURCE = (
    "import os\n"
    "forged = " + repr(FORGED + "\x1b[31mred\x1b]8;;https://example.com\x07link\x1b]8;;\x07\x9b2J") + "\n"
    "print(forged)\n"
    "os.write(1, forged.encode() + b'\\n')\n"
    "raise RuntimeError(forged)"
)
HOSTILE_NAME = "evil\x1b[0Ksection_end:1:nbci_setup\r\x1b[0K.ipynb"


def sections(log: str) -> List[Tuple[str, str, str]]:
    """Every section marker in ``log``: (start or end, name, the header after a start)."""
    return [(found.group(1), found.group(2), found.group(4)) for found in MARKER.finditer(log)]


def assert_inert(log: str) -> None:
    """Sections open and close in order, each nbci's own, and nothing but their markers holds an
    escape character, a CSI or a carriage return."""
    open_names: List[str] = []
    for kind, name, _ in sections(log):
        assert re.fullmatch(r"nbci_(\d+|setup)", name), name
        if kind == "start":
            open_names.append(name)
        else:
            assert open_names and open_names.pop() == name, (name, open_names)
    assert not open_names
    rest = MARKER.sub("", log)
    assert not {"\x1b", "\x9b", "\r"} & set(rest), [line for line in rest.splitlines() if "\x1b" in line][:3]


def gitlab_env(**extra: str) -> Dict[str, str]:
    return {"GITLAB_CI": "true", **extra}


def run_raw(project: Project, *args: str, env: Dict[str, str]) -> subprocess.CompletedProcess:
    """``nbci`` run in ``project`` with its stdout as written: carriage returns kept (text mode would
    turn them into line breaks)."""
    proc = subprocess.run([sys.executable, "-m", "nbci", *args], cwd=project.root, env=nbci_env(env),
                          capture_output=True, timeout=240)
    return subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout.decode("utf-8"),
                                       proc.stderr.decode("utf-8"))


def test_each_failure_is_a_collapsed_section_in_gitlab_mode(project: Project) -> None:
    project.add("fails_at_cell_2.ipynb")
    project.write("zero.ipynb", "1 / 0")
    project.write("fine.ipynb", "1")
    run = run_raw(project, "run", "--timeout", "60", env=gitlab_env())
    assert run.returncode == 1
    found = sections(run.stdout)
    assert [(kind, header) for kind, _, header in found] == [
        ("start", "FAILED: fails_at_cell_2.ipynb"), ("end", ""), ("start", "FAILED: zero.ipynb"), ("end", "")]
    assert found[0][1] == found[1][1] != found[2][1] == found[3][1]
    inside = run.stdout.split("FAILED: zero.ipynb\n")[1].split("section_end")[0]
    assert "ZeroDivisionError" in inside and "--- cell 1 ---" in inside
    after = MARKER.split(run.stdout)[-1]
    assert "did not pass:" in after and "PASSED           fine.ipynb" in run.stdout.split("section_start")[0]
    assert_inert(run.stdout)


def test_without_gitlab_or_with_nbci_gitlab_false_the_console_has_no_sections(project: Project) -> None:
    project.write("zero.ipynb", "1 / 0")
    for env in ({"GITLAB_CI": "false"}, gitlab_env(NBCI_GITLAB="false")):
        run = run_raw(project, "run", "--timeout", "60", env=env)
        assert run.returncode == 1
        assert "section_" not in run.stdout and "\x1b" not in run.stdout
        assert f"{'=' * 70}\nFAILED: zero.ipynb\n" in run.stdout
    forced = run_raw(project, "run", "--timeout", "60", env={"GITLAB_CI": "false", "NBCI_GITLAB": "true"})
    assert [kind for kind, _, _ in sections(forced.stdout)] == ["start", "end"]


def test_notebook_text_opens_closes_and_colours_nothing_in_gitlab_mode(project: Project) -> None:
    project.write(HOSTILE_NAME, HOSTILE_SOURCE)
    run = run_raw(project, "run", "--timeout", "60", "--junit", "junit.xml", env=gitlab_env())
    assert run.returncode == 1
    assert [kind for kind, _, _ in sections(run.stdout)] == ["start", "end"]
    assert_inert(run.stdout)
    assert "\\x1b[0Ksection_start:1:forged[collapsed=true]\\r" in run.stdout  # shown, not obeyed
    assert sections(run.stdout)[0][2] == "FAILED: evilsection_end:1:nbci_setup\\r.ipynb"  # escape sequences dropped
    junit = (project.root / "junit.xml").read_text(encoding="utf-8")
    assert 'file="evil' in junit and "\x1b" not in junit


def component_inputs() -> Dict[str, dict]:
    """The component's ``spec: inputs``, in order."""
    spec = next(yaml.safe_load_all((ROOT / "templates" / "notebook-ci.yml").read_text(encoding="utf-8")))
    return spec["spec"]["inputs"]


def test_the_component_installs_this_version_and_the_readme_lists_its_inputs() -> None:
    from nbci import __version__

    inputs = component_inputs()
    assert inputs["engine"]["default"] == f"nbci=={__version__}"
    section = (ROOT / "README.md").read_text(encoding="utf-8").split("## GitLab CI\n")[1].split("\n## ")[0]
    rows = re.findall(r"^\| `([a-z-]+)` \| (`[^`]*`|—) \|", section, flags=re.MULTILINE)
    assert [name for name, _ in rows] == list(inputs)
    for name, default in rows:
        assert default.strip("`") == str(inputs[name]["default"]).lower() or (default == "—" and inputs[name]["default"] == "")
    assert f"notebook-ci@{__version__}" in section and f"/v{__version__}/templates/notebook-ci.yml" in section


# --- the component, run by gitlab-ci-local ----------------------------------------------------


def gitlab_ci_local() -> str:
    """The gitlab-ci-local executable: $NBCI_GITLAB_CI_LOCAL, the one .ci/run installs, or on PATH."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    for candidate in (os.environ.get("NBCI_GITLAB_CI_LOCAL"),
                      str(cache / "notebook-ci" / "gitlab-ci-local" / "node_modules" / ".bin" / "gitlab-ci-local"),
                      shutil.which("gitlab-ci-local")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    pytest.skip(f"gitlab-ci-local is not installed: bash .ci/run installs it (npm install gitlab-ci-local@"
                f"{GITLAB_CI_LOCAL_VERSION})")


@pytest.fixture(scope="module")
def engine_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel of this checkout's engine, built from a copy so the checkout gets no build folders."""
    source = tmp_path_factory.mktemp("engine-source")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "entrypoint" / "nbci", source / "entrypoint" / "nbci",
                    ignore=shutil.ignore_patterns("__pycache__"))
    dist = tmp_path_factory.mktemp("engine-wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(dist), str(source)],
                   check=True, timeout=300)
    return next(dist.glob("nbci-*.whl"))


@pytest.fixture(scope="module")
def pipeline(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> subprocess.CompletedProcess:
    """The consumer project (tests/gitlab) run once by gitlab-ci-local: a job on good notebooks, one on
    broken and hostile ones, both including the component from this checkout."""
    executable = gitlab_ci_local()
    if shutil.which("rsync") is None or shutil.which("git") is None:
        pytest.skip("gitlab-ci-local needs rsync and git: bash .ci/run installs rsync (apt-get install rsync)")
    engine_wheel = request.getfixturevalue("engine_wheel")  # built only when the pipeline can run
    consumer = tmp_path_factory.mktemp("consumer")
    shutil.copytree(FIXTURES / "consumer", consumer, dirs_exist_ok=True)
    shutil.copytree(ROOT / "templates", consumer / "templates")
    ci = (consumer / ".gitlab-ci.yml").read_text(encoding="utf-8")
    (consumer / ".gitlab-ci.yml").write_text(ci.replace("ENGINE_WHEEL", str(engine_wheel)), encoding="utf-8")
    Project(consumer).write(f"broken/{HOSTILE_NAME}", HOSTILE_SOURCE)
    git = ["git", "-c", "user.name=nbci", "-c", "user.email=nbci@example.com"]
    for command in (["init", "--quiet"], ["add", "--all"], ["commit", "--quiet", "--message", "consumer"],
                    ["remote", "add", "origin", "https://gitlab-ci-token:forged-job-token@gitlab.example/x/y.git"]):
        subprocess.run(git + command, cwd=consumer, check=True, capture_output=True)
    env = {key: value for key, value in nbci_env().items() if not key.startswith(("GITLAB_", "CI_"))}
    temp = tmp_path_factory.mktemp("job-temp")  # the jobs' engine and notebook environments
    variables = [f"TMPDIR={temp}", "CI_JOB_TOKEN=forged-job-token", "CI_REGISTRY_PASSWORD=forged-password"]
    proc = subprocess.run([executable, "--force-shell-executor", "--no-color", "--concurrency", "2",
                           *[arg for variable in variables for arg in ("--variable", variable)]], cwd=consumer,
                          env=env, capture_output=True, text=True, encoding="utf-8", errors="replace", timeout=900)
    proc.cwd = consumer  # type: ignore[attr-defined]
    return proc


def job_log(pipeline: subprocess.CompletedProcess, job: str) -> str:
    return (pipeline.cwd / ".gitlab-ci-local" / "output" / f"{job}.log").read_bytes().decode("utf-8", "replace")


def test_the_component_passes_on_good_notebooks_and_fails_on_a_broken_one(pipeline: subprocess.CompletedProcess) -> None:
    assert pipeline.returncode != 0, pipeline.stdout[-3000:]
    assert re.search(r"PASS +notebooks-good", pipeline.stdout), pipeline.stdout[-3000:]
    assert re.search(r"FAIL +notebooks-broken", pipeline.stdout), pipeline.stdout[-3000:]
    assert "2 notebooks: 2 passed" in job_log(pipeline, "notebooks-good")  # credentials.ipynb: no token in reach
    broken = job_log(pipeline, "notebooks-broken")
    assert "2 notebooks: 2 failed" in broken and "FAILED: broken/fails_at_cell_2.ipynb" in broken


def test_the_component_declares_reports_and_artifacts_where_they_are_written(
        pipeline: subprocess.CompletedProcess) -> None:
    expanded = yaml.safe_load((pipeline.cwd / ".gitlab-ci-local" / "expanded-gitlab-ci.yml").read_text())
    good, broken = expanded["notebooks-good"]["artifacts"], expanded["notebooks-broken"]["artifacts"]
    assert (good["when"], good["expire_in"], broken["expire_in"]) == ("always", "2 days", "5 days")
    assert broken["paths"] == ["broken-output/"]
    assert broken["reports"]["junit"] == "broken-output/junit.xml"
    assert broken["reports"]["coverage_report"] == {"coverage_format": "cobertura", "path": "broken-output/coverage.xml"}
    assert expanded["notebooks-broken"]["coverage"] == r"/^coverage: \d+(?:\.\d+)?%/"
    artifacts = pipeline.cwd / ".gitlab-ci-local" / "artifacts" / "notebooks-broken" / "broken-output"
    junit = (artifacts / "junit.xml").read_text(encoding="utf-8")
    assert 'file="broken/fails_at_cell_2.ipynb"' in junit and "<failure" in junit
    assert (artifacts / "broken" / "fails_at_cell_2.ipynb").is_file() and (artifacts / "index.html").is_file()
    good = pipeline.cwd / ".gitlab-ci-local" / "artifacts" / "notebooks-good" / "nbci-output"
    assert (good / "good" / "credentials.ipynb").is_file() and (good / "junit.xml").is_file()


def test_the_component_log_has_sections_and_notebook_text_stays_inert(pipeline: subprocess.CompletedProcess) -> None:
    log = job_log(pipeline, "notebooks-broken")
    headers = [header for kind, _, header in sections(log) if kind == "start"]
    assert headers[0].startswith("notebook-ci: install the engine")
    assert sorted(headers[1:])[0] == "FAILED: broken/evilsection_end:1:nbci_setup\\r.ipynb"
    assert "FAILED: broken/fails_at_cell_2.ipynb" in headers
    assert_inert(log.split("nbci: 2 notebooks")[1])  # what nbci wrote (before it: the runner's command echo)
