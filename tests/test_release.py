"""The release workflow: the engine reaches PyPI only as built and checked, through trusted publishing."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
RELEASE = yaml.safe_load((ROOT / ".github" / "workflows" / "release.yml").read_text(encoding="utf-8"))
JOBS = RELEASE["jobs"]


def needs(job: str) -> set:
    """Every job that must finish before ``job``, directly or not."""
    direct = JOBS[job].get("needs", [])
    direct = [direct] if isinstance(direct, str) else direct
    return set(direct).union(*(needs(name) for name in direct)) if direct else set()


def test_only_the_pypi_job_can_mint_an_identity_token_and_it_holds_nothing_else():
    minting = {name for name, job in JOBS.items() if (job.get("permissions") or {}).get("id-token") == "write"}
    assert minting == {"pypi"}
    pypi = JOBS["pypi"]
    assert pypi["permissions"] == {"id-token": "write"} and pypi["environment"]["name"] == "pypi"
    assert RELEASE["permissions"] == {}
    assert [step["uses"].split("@")[0] for step in pypi["steps"]] == ["actions/download-artifact",
                                                                     "pypa/gh-action-pypi-publish"]
    assert not any("with" in step and ("password" in step["with"] or "user" in step["with"])
                   for step in pypi["steps"])  # no API token


def test_what_pypi_gets_was_tested_built_and_checked_first():
    assert needs("pypi") >= {"test", "build"} and needs("publish") >= {"pypi"}
    build = JOBS["build"]
    runs = [step.get("run", "") for step in build["steps"]]
    assert "bash .github/release/build.sh dist" in runs
    [upload] = [step for step in build["steps"] if step.get("uses", "").startswith("actions/upload-artifact@")]
    [download] = [step for step in JOBS["pypi"]["steps"] if step["uses"].startswith("actions/download-artifact@")]
    assert upload["with"]["name"] == download["with"]["name"] and upload["with"]["path"] == download["with"]["path"]
    assert "bash .github/release/build.sh" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def test_the_build_tools_come_from_a_lock_with_hashes_and_the_tag_push_keeps_the_token_out_of_urls():
    build = (ROOT / ".github" / "release" / "build.sh").read_text(encoding="utf-8")
    assert "--require-hashes -r .github/release/requirements-build.txt" in build and "--no-isolation" in build
    lock = (ROOT / ".github" / "release" / "requirements-build.txt").read_text(encoding="utf-8")
    pins = [line for line in lock.splitlines() if line and not line.startswith((" ", "#"))]
    assert {pin.split("==")[0] for pin in pins} >= {"build", "twine", "setuptools"}
    assert all("==" in pin for pin in pins) and lock.count("--hash=sha256:") >= len(pins)
    [move] = [step for step in JOBS["publish"]["steps"] if "move-major-tag.sh" in step.get("run", "")]
    assert "x-access-token:${GH_TOKEN}@" not in move["run"] and "::add-mask::" in move["run"]
