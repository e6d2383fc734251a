"""Globs a pull request writes (``.nbci.yml`` entries, and patterns a workflow passes on): matched
in time linear in the path, however many stars they hold."""

from __future__ import annotations

from dataclasses import replace
from typing import Optional

import pytest
from conftest import Project

from nbci.discover import MAX_GLOB_CHARS, MAX_GLOBS, Glob, translate_glob
from nbci.errors import ConfigError

MANY_DOUBLE_STARS = "a/" + "**/" * 17 + "b.ipynb"


class CountingClass:
    """A step's character class that counts how often it is asked."""

    calls = 0

    def __init__(self, pattern) -> None:
        self.pattern = pattern

    def fullmatch(self, char: str) -> Optional[object]:
        CountingClass.calls += 1
        return self.pattern.fullmatch(char)


@pytest.mark.parametrize("pattern", [MANY_DOUBLE_STARS, "**/x/" * 12 + "b", "*a" * 40 + "*b", "**x" * 30 + "b"])
def test_a_glob_asks_each_step_at_most_once_per_character(pattern: str) -> None:
    path = "a/" + "x/" * 300 + "c.ipynb"  # long, and matching none of them: backtracking would never end
    steps = translate_glob(pattern).steps
    glob = Glob([replace(step, takes=CountingClass(step.takes)) if step.takes else step for step in steps])
    CountingClass.calls = 0
    assert not glob.match(path) and not glob.match("a" * 300 + ".txt")
    assert CountingClass.calls <= (len(path) + 300 + len(".txt")) * len(steps)


def test_an_overlong_glob_is_a_usage_error() -> None:
    with pytest.raises(ConfigError, match="over nbci's limit"):
        translate_glob("*" * (MAX_GLOB_CHARS + 1))


def test_hostile_globs_in_every_place_finish(project: Project) -> None:
    deep = "a/" + "x/" * 60
    project.write(f"{deep}b.ipynb", "1")
    project.write(f"{deep}c.ipynb", "1")
    never = "a/" + "**/" * 17 + "never.ipynb"
    (project.root / ".nbci.yml").write_text(f'notebooks:\n  - glob: "{never}"\n    skip: never\n', encoding="utf-8")
    listed = project.run("list", MANY_DOUBLE_STARS, "a/**/c.ipynb", "--exclude", never)
    assert listed.code == 0, listed.stderr
    assert listed.stdout.splitlines() == [f"{deep}b.ipynb", f"{deep}c.ipynb"]
    overlong = project.run("list", "*" * (MAX_GLOB_CHARS + 1))
    assert overlong.code == 2 and "over nbci's limit of 1024" in overlong.stderr


def test_an_overlong_glob_in_the_settings_file_names_its_line(project: Project) -> None:
    project.write("a.ipynb", "1")
    (project.root / ".nbci.yml").write_text(f'notebooks:\n  - glob: "{"[ab]" * 300}"\n    skip: why\n', encoding="utf-8")
    listed = project.run("list")
    assert listed.code == 2 and len(listed.stderr.splitlines()) == 1, listed.stderr
    assert ".nbci.yml:2: a glob of 1200 characters is over nbci's limit of 1024" in listed.stderr


def test_thousands_of_globs_from_the_settings_file_are_refused(project: Project) -> None:
    project.write("a.ipynb", "1")
    globs = " ".join(f"**/{i}*.ipynb" for i in range(MAX_GLOBS + 1))  # one text: not a YAML value each
    (project.root / ".nbci.yml").write_text(f'defaults:\n  notebooks: "{globs}"\n', encoding="utf-8")
    listed = project.run("list")
    assert listed.code == 2 and listed.stderr.splitlines() == [
        "nbci: error: 1001 globs and excludes are over nbci's limit of 1000: use fewer, wider globs"]
    (project.root / ".nbci.yml").write_text('defaults:\n  notebooks: "' + "**/*.ipynb " * 5000 + '"\n', encoding="utf-8")
    assert project.run("list").stdout.splitlines() == ["a.ipynb"]  # the same glob, walked once
