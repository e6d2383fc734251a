"""Shared helpers: fixture notebooks copied into a temporary project, and nbci run for real."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional

import nbformat
import pytest

NOTEBOOKS = Path(__file__).parent / "notebooks"


@dataclass
class Run:
    """A finished ``nbci`` process: exit code, output, and results.json when written."""

    code: int
    stdout: str
    stderr: str
    root: Path
    output_dir: Path

    @property
    def results(self) -> dict:
        return json.loads((self.output_dir / "results.json").read_text(encoding="utf-8"))

    def results_paths(self) -> list:
        return [nb["path"] for nb in self.results["notebooks"]]

    def result(self, path: str) -> dict:
        found = [nb for nb in self.results["notebooks"] if nb["path"] == path]
        assert found, f"{path} not in results: {[nb['path'] for nb in self.results['notebooks']]}"
        return found[0]

    def executed(self, path: str) -> nbformat.NotebookNode:
        return nbformat.read(str(self.output_dir / path), as_version=4)


class Project:
    """A temporary folder to put fixture notebooks in and run nbci on."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def add(self, fixture: str, as_path: Optional[str] = None) -> Path:
        target = self.root / (as_path or fixture)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(NOTEBOOKS / fixture, target)
        return target

    def write(self, path: str, *sources: str, kernel: str = "python3") -> Path:
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
        nb.metadata.kernelspec = {"name": kernel, "display_name": kernel, "language": "python"}
        target = self.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, str(target))
        return target

    def popen(self, *args: str, env: Optional[Dict[str, str]] = None) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "nbci", *args], cwd=self.root, env=nbci_env(env),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8",
        )

    def run(self, *args: str, env: Optional[Dict[str, str]] = None, timeout: float = 240) -> Run:
        proc = self.popen(*args, env=env)
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:  # a hung run must not outlive its test
            proc.kill()
            proc.communicate()
            raise
        output_dir = self.root / "nbci-output"
        for i, arg in enumerate(args):
            if arg == "--output-dir":
                output_dir = self.root / args[i + 1]
        return Run(proc.returncode, stdout, stderr, self.root, output_dir)


def nbci_env(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """The test process's environment without GitHub, GitLab or NBCI_ variables leaking in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NBCI_", "GITHUB_", "GITLAB_"))}
    env["PYTHONIOENCODING"] = "utf-8"
    env.update(extra or {})
    return env


@pytest.fixture
def project(tmp_path: Path) -> Project:
    root = tmp_path / "project"
    root.mkdir()
    return Project(root)
