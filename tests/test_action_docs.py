"""The documented inputs and outputs tables match action.yml: names, order and defaults.

The tables live in README.md.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, List, Tuple

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
ROW = re.compile(r"^\|\s*`([^`]+)`\s*\|(.*)\|\s*$")
NO_DEFAULT = "—"


def action() -> dict:
    return yaml.safe_load((ROOT / "action.yml").read_text(encoding="utf-8"))


def docs_file() -> Path:
    return ROOT / "README.md"


def table(header: str) -> List[Tuple[str, List[str]]]:
    """The rows (first cell's code name, other cells) of the table whose header row is ``header``."""
    lines = docs_file().read_text(encoding="utf-8").splitlines()
    assert header in lines, f"{docs_file().name} has no table with the header {header!r}"
    rows = []
    for line in lines[lines.index(header) + 2:]:
        match = ROW.match(line)
        if not match:
            break
        rows.append((match.group(1), [cell.strip() for cell in match.group(2).split(" | ")]))
    return rows


def documented_default(cell: str) -> str:
    if cell == NO_DEFAULT:
        return ""
    match = re.fullmatch(r"`([^`]*)`", cell)
    assert match, f"a default is `code` or {NO_DEFAULT}, not {cell!r}"
    return match.group(1)


def default_cell(spec: dict) -> str:
    default = str(spec.get("default", ""))
    return f"`{default}`" if default else NO_DEFAULT


def expected_inputs_table() -> str:
    rows = [f"| `{name}` | {default_cell(spec)} | {spec['description']} |" for name, spec in action()["inputs"].items()]
    return "\n".join(["| Input | Default | Description |", "| --- | --- | --- |", *rows])


def test_inputs_table_matches_action_yml():
    documented: Dict[str, List[str]] = dict(table("| Input | Default | Description |"))
    inputs = action()["inputs"]
    assert list(documented) == list(inputs), f"expected, in this order:\n{expected_inputs_table()}"
    for name, spec in inputs.items():
        default, description = documented[name][0], documented[name][1]
        assert documented_default(default) == str(spec.get("default", "")), name
        assert description, f"{name} has no description in {docs_file().name}"


def test_outputs_table_matches_action_yml():
    documented = [name for name, _ in table("| Output | Description |")]
    assert documented == list(action()["outputs"])


@pytest.mark.parametrize("section", ["inputs", "outputs"])
def test_every_input_and_output_is_described_in_action_yml(section):
    for name, spec in action()[section].items():
        assert spec.get("description"), f"{section}.{name} needs a description (the marketplace shows it)"


def test_every_output_comes_from_a_step_of_the_action():
    steps = {step.get("id") for step in action()["runs"]["steps"]}
    for name, spec in action()["outputs"].items():
        match = re.fullmatch(r"\$\{\{ steps\.([\w-]+)\.outputs\.([\w-]+) \}\}", spec["value"])
        assert match and match.group(1) in steps, f"outputs.{name}: {spec['value']}"


def test_readme_links_resolve():
    text = README.read_text(encoding="utf-8")
    anchors = {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
               for heading in re.findall(r"^#+ (.*)$", text, re.MULTILINE)}
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if target.startswith(("http://", "https://")):
            continue
        if target.startswith("#"):
            assert target[1:] in anchors, target
        else:
            assert (ROOT / target.split("#")[0]).exists(), target


def test_readme_workflows_are_least_privilege():
    text = README.read_text(encoding="utf-8")
    blocks = re.findall(r"```yaml\n(.*?)```", text, re.DOTALL)
    for block in blocks:
        for match in re.finditer(r"uses: actions/checkout@\S+\n((?:\s+.*\n)*)", block):
            assert "persist-credentials: false" in match.group(1), block
        if "jobs:" in block or "changed-since" in block:
            assert "permissions:" in block, block
    security = text.split("## Security", 1)[1].split("\n## ", 1)[0]
    assert "pull_request_target" in security and "workflow_run" in security


def test_marketplace_metadata():
    spec = action()
    assert spec["name"].startswith("notebook-ci") and len(spec["name"]) <= 100
    assert 20 <= len(spec["description"]) <= 125
    assert spec["branding"]["icon"] and spec["branding"]["color"] in (
        "white", "black", "yellow", "blue", "green", "orange", "red", "purple", "gray-dark")
