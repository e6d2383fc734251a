"""Secrets: their values never reach anything nbci writes; notebooks needing absent ones are skipped.

Real kernels throughout: a notebook prints a secret every way it can, then every file nbci wrote
(executed copies, HTML, results.json, JUnit, the execution cache, the job summary) and its console
output are searched for it.
"""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from typing import List
from urllib.parse import quote

import pytest

from nbci.masking import Masker

SECRET = 'tok-"é/+ 9f8e7d6c5b4a3210'  # quotes, non-ASCII, URL- and JSON-special characters
DECLARED = "db-pass-77q"  # named by --mask-env only: its name says nothing
LEAKS = (
    "import os, sys, base64, json, urllib.parse\nt, d = os.environ['MY_API_TOKEN'], os.environ['DB_CONN']\nprint(t, d)",
    "print(t, d, file=sys.stderr)",
    "t",
    "from IPython.display import HTML, display\ndisplay(HTML('<b>%s</b>' % t))",
    "os.write(1, ('from the kernel process ' + t + ' ' + d + '\\n').encode())",
    "print(urllib.parse.quote(t, safe=''))",
    "print(base64.b64encode(('x' + t + 'yz').encode()).decode())",
    "print({'j': json.dumps({'t': t, 'd': d})})",
    "try:\n    raise ValueError(t)\nexcept ValueError:\n    import traceback; traceback.print_exc()",
)
FAILS = ("import os\nraise RuntimeError('request failed: ' + os.environ['MY_API_TOKEN'] + os.environ['DB_CONN'])",)
STARTS = {
    "one process": (["--jobs", "1"], {}),
    "helpers": (["--jobs", "2", "--helpers", "2"], {}),
    "forked kernels": (["--jobs", "1", "--kernel-start", "fork"], {"PYTHONHASHSEED": "0"}),
}


def forms(value: str) -> List[str]:
    """The texts that give ``value`` away: its distinctive part, URL-encoded, base64 as printed above."""
    printed = base64.b64encode(("x" + value + "yz").encode()).decode()
    return [value[-10:], quote(value, safe=""), printed[2:-4]]


def leaks(folder: Path, texts: List[str]) -> List[str]:
    """Every file below ``folder`` holding any of ``texts`` (as UTF-8), as path: text."""
    found = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        found += [f"{path}: {text}" for text in texts if text.encode() in data]
    return found


@pytest.mark.parametrize("start", STARTS)
def test_a_secret_printed_every_way_reaches_no_file_nor_the_console(project, tmp_path: Path, start: str) -> None:
    options, env = STARTS[start]
    if "fork" in start and not sys.platform.startswith("linux"):
        pytest.skip("forking kernels needs Linux")
    project.write("leak.ipynb", *LEAKS)
    project.write("fails.ipynb", *FAILS)
    summary = tmp_path / "summary.md"
    env = {**env, "MY_API_TOKEN": SECRET, "DB_CONN": DECLARED, "NBCI_MASK_ENV": "DB_CONN", "GITHUB_ACTIONS": "true",
           "GITHUB_STEP_SUMMARY": str(summary), "GITHUB_OUTPUT": str(tmp_path / "output")}
    run = project.run("run", *options, "--html", "--junit", "junit.xml", "--cache-dir", ".cache", env=env)
    assert run.code == 1, run.stderr
    assert run.result("leak.ipynb")["status"] == "passed" and run.result("fails.ipynb")["status"] == "failed"
    assert any(path.is_file() for path in (project.root / ".cache").rglob("*")), "the passed notebook is cached"
    assert summary.exists() and (project.root / "junit.xml").exists() and (run.output_dir / "index.html").exists()
    texts = forms(SECRET) + [DECLARED]
    assert leaks(tmp_path, texts) == []
    assert [text for text in texts if text in run.stdout + run.stderr] == []
    assert "***" in run.executed("leak.ipynb").cells[0].outputs[0]["text"]
    assert run.result("leak.ipynb")["masked"] >= len(LEAKS) and run.result("fails.ipynb")["masked"] >= 2
    assert "RuntimeError: request failed: ******" in run.stdout
    count = f"{run.result('leak.ipynb')['masked']} secret values masked"
    for report in (run.stdout, summary.read_text(), (run.output_dir / "index.html").read_text()):
        assert count in report


def test_a_cached_copy_stays_masked_and_keeps_its_count(project, tmp_path: Path) -> None:
    project.write("leak.ipynb", *LEAKS)
    env = {"MY_API_TOKEN": SECRET, "DB_CONN": DECLARED, "NBCI_MASK_ENV": "DB_CONN"}
    first = project.run("run", "--jobs", "1", "--cache-dir", ".cache", env=env)
    again = project.run("run", "--jobs", "1", "--cache-dir", ".cache", "--html", env=env)
    assert (first.code, again.code) == (0, 0), again.stderr
    assert again.result("leak.ipynb")["status"] == "cached"
    assert again.result("leak.ipynb")["masked"] == first.result("leak.ipynb")["masked"] > 0
    assert leaks(tmp_path, forms(SECRET) + [DECLARED]) == []


def test_short_values_and_plain_names_are_not_masked(project) -> None:
    project.write("short.ipynb", "import os\nprint(*(os.environ[name] for name in ('SHORT_TOKEN', 'TINY', 'HOME_DIR')))")
    env = {"SHORT_TOKEN": "abc1234", "TINY": "abc", "HOME_DIR": "/srv/notebooks/home"}
    run = project.run("run", "--jobs", "1", "--mask-env", "TINY", env=env)
    assert run.code == 0, run.stderr
    assert run.executed("short.ipynb").cells[0].outputs[0]["text"] == "abc1234 abc /srv/notebooks/home\n"
    assert run.result("short.ipynb")["masked"] == 0


def test_the_masker_finds_each_base64_alignment_and_escaped_forms() -> None:
    masker = Masker.from_environment({"X_SECRET": SECRET, "PLAIN": SECRET}, ())
    for prefix in ("", "a", "ab"):
        encoded = base64.b64encode((prefix + SECRET + "tail").encode()).decode()
        masked, count = masker.mask_text(encoded)
        assert count == 1 and masked.startswith(encoded[:len(prefix)]) and masked.endswith(encoded[-4:])
    assert masker.mask_text(base64.b64encode(SECRET[:-4].encode()).decode())[1] == 0
    text = repr({"j": json.dumps({"t": SECRET})})
    assert masker.mask_text(text) == ("{'j': '{\"t\": \"***\"}'}", 1)
    assert Masker.from_environment({"PLAIN": SECRET}, ()).mask_text(SECRET) == (SECRET, 0)


REQUIRES = """
defaults:
  requires-env: [ALWAYS_SET]
notebooks:
  - glob: "portal/*.ipynb"
    requires-env: [ALWAYS_SET, PORTAL_TOKEN]
"""


def test_a_notebook_needing_an_absent_secret_is_skipped_in_every_report(project, tmp_path: Path) -> None:
    project.write("portal/fetch.ipynb", "import os\nprint(len(os.environ['PORTAL_TOKEN']))")
    project.write("plain.ipynb", "print('runs')")
    (project.root / ".nbci.yml").write_text(REQUIRES)
    summary = tmp_path / "summary.md"
    env = {"ALWAYS_SET": "1", "PORTAL_TOKEN": "", "GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary),
           "GITHUB_OUTPUT": str(tmp_path / "output")}
    run = project.run("run", "--jobs", "1", "--html", "--junit", "junit.xml", "--cache-dir", ".cache", env=env)
    reason = "needs PORTAL_TOKEN (not set; secrets are not given to workflows from forks)"
    assert run.code == 0, run.stderr
    assert run.result("portal/fetch.ipynb")["status"] == "skipped"
    assert run.result("portal/fetch.ipynb")["skip_reason"] == reason
    assert run.result("plain.ipynb")["status"] == "passed"
    for text in (run.stdout, summary.read_text(), (project.root / "junit.xml").read_text(),
                 (run.output_dir / "index.html").read_text()):
        assert "needs PORTAL_TOKEN (not set; secrets are not given to workflows from forks" in text
    present = project.run("run", "--jobs", "1", "--cache-dir", ".cache", env={"ALWAYS_SET": "1", "PORTAL_TOKEN": "t0k"})
    assert present.code == 0 and present.result("portal/fetch.ipynb")["status"] == "passed"
    absent = project.run("run", "--jobs", "1", env={"PORTAL_TOKEN": "t0k"})
    assert absent.result("plain.ipynb")["skip_reason"] == reason.replace("PORTAL_TOKEN", "ALWAYS_SET")


@pytest.mark.parametrize("setting, message", [
    ("defaults:\n  requires-env: [1BAD]\n", "requires-env: '1BAD' is not an environment variable name"),
    ("notebooks:\n  - glob: '*'\n    requires-env: {a: b}\n", "is not an environment variable name"),
])
def test_requires_env_takes_variable_names_only(project, setting: str, message: str) -> None:
    project.write("a.ipynb", "1")
    (project.root / ".nbci.yml").write_text(setting)
    run = project.run("run", "--jobs", "1")
    assert run.code == 2 and message in run.stderr and len(run.stderr.strip().splitlines()) == 1


def test_mask_env_takes_variable_names_only(project) -> None:
    project.write("a.ipynb", "1")
    run = project.run("run", "--mask-env", "NOT A NAME")
    assert run.code == 2 and "--mask-env: 'NOT A NAME' is not an environment variable name" in run.stderr
