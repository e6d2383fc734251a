"""Every action we call is pinned to a full commit SHA with its version beside it, on Node 24."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
PINNED = re.compile(r"^[\w.-]+/[\w.-]+(?:/[\w./-]+)?@[0-9a-f]{40} # v\d+\.\d+\.\d+$")
USES = re.compile(r"^\s*(?:-\s+)?uses:\s*(.+?)\s*$", re.MULTILINE)


def uses_lines(path: Path):
    return [value for value in USES.findall(path.read_text(encoding="utf-8")) if not value.startswith("./")]


def test_every_nested_action_is_pinned_to_a_sha_with_its_version():
    files = [ROOT / "action.yml", *sorted((ROOT / ".github" / "workflows").glob("*.yml")),
             *sorted((ROOT / "tests" / "act" / "workflows").glob("*.yml"))]
    found = [(path.name, value) for path in files for value in uses_lines(path)]
    assert len(found) > 10
    assert [f for f in found if not PINNED.match(f[1])] == []


def test_one_version_per_action():
    versions = {}
    for path in [ROOT / "action.yml", *(ROOT / ".github" / "workflows").glob("*.yml"),
                 *(ROOT / "tests" / "act" / "workflows").glob("*.yml")]:
        for value in uses_lines(path):
            repo = "/".join(value.split("@")[0].split("/")[:2])
            versions.setdefault(repo, set()).add(value.split("@")[1])
    assert {repo: pins for repo, pins in versions.items() if len(pins) > 1} == {}


def test_stand_ins_run_on_node_24_like_the_actions_they_stand_for():
    for path in (ROOT / "tests" / "act" / "actions").rglob("action.yml"):
        using = yaml.safe_load(path.read_text(encoding="utf-8"))["runs"]["using"]
        assert using in ("node24", "composite"), path
