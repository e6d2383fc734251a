"""Cells that install packages while a notebook runs: a warning, and no execution cache for it."""

from __future__ import annotations

import nbformat
import pytest

from conftest import Project
from nbci.installs import install_cells


@pytest.mark.parametrize("line", [
    "%pip install pandas", "!pip install -q pandas==2.2", "  ! pip3 install x", "%conda install -y numpy",
    "!uv pip install polars", "!python -m pip install x", "%mamba install x",
    "get_ipython().run_line_magic('pip', 'install pandas')",
    'subprocess.check_call([sys.executable, "-m", "pip", "install", "x"])',
    "!{sys.executable} -m pip install x", "os.system('pip install x')", "%%bash\npip install x",
    "subprocess.run(['pip', 'install', 'x'], check=True)", "%%capture\n%pip install x",
    "!pip -q install x", "%pip --quiet install x", "!pip3.11 install x", "!python -m pip -q install x",
    "subprocess.check_call(\n    [sys.executable, '-m', 'pip', 'install', 'x'],\n)", "pip.main(['install', 'x'])",
    "await micropip.install('x')", "!apt-get install -y graphviz", "!python setup.py install", "!uv add x",
    "!conda env update -f environment.yml", "subprocess.run(['pip', '-q', 'install', 'x'])",
])
def test_each_common_way_to_install_a_package_is_found(line: str) -> None:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("%pip install in prose"),
                                         nbformat.v4.new_code_cell("x = 1"),
                                         nbformat.v4.new_code_cell(line if line.startswith("%%") else
                                                                   f"import sys\n{line}")])
    assert install_cells(nb) == ["cell 3 (code cell 2)"]


@pytest.mark.parametrize("line", ["%pip list", "!pip freeze", "# install with: pip install x",
                                  "print('pip install x')", "%pip --version", "x = 'then run pip install x'",
                                  "import sys\n%%bash\npip install x",
                                  "subprocess.run(['ls'])\n# then: pip install x"])
def test_lines_that_install_nothing_are_not_found(line: str) -> None:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(line)])
    assert install_cells(nb) == []


def test_a_notebook_that_installs_is_warned_about_and_never_cached(project: Project) -> None:
    project.write("installs.ipynb", "if False:\n    get_ipython().run_line_magic('pip', 'install pandas')",
                  "print('ran')")
    project.write("plain.ipynb", "print('plain')")
    runs = [project.run("run", "--cache-dir", "nbci-cache") for _ in range(2)]
    assert all(run.code == 0 for run in runs), runs[-1].stdout
    assert runs[1].result("plain.ipynb")["status"] == "cached"  # the cache works here
    assert runs[1].result("installs.ipynb")["status"] == "passed"
    for run in runs:
        [warning] = run.result("installs.ipynb")["warnings"]
        assert warning.startswith("installs packages while it runs (cell 1): runs are not repeatable")
        assert "installs.ipynb" in run.stdout and "execution cache is not used" in run.stdout
    assert not [path for path in (project.root / "nbci-cache").rglob("*.json") if "run_line_magic" in path.read_text()]
