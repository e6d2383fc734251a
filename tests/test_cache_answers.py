"""The execution cache never passes what now fails: every answer a notebook got (a listing, an
existence check, a failed open, a variable) is checked again, and what cannot be told is not kept."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from conftest import Project
from nbci.cache import MAX_HASHED_BYTES, ExecutionCache, path_answer
from test_cache import cached_run, entries, statuses

# notebook -> (its cell, what to change between the runs so that it fails)
PATTERNS = {
    "listdir.ipynb": ("import os\nassert os.listdir('d') == ['a']", lambda root: (root / "d/b").write_text("")),
    "glob.ipynb": ("import glob\nassert glob.glob('g/*.csv') == ['g/a.csv']", lambda root: (root / "g/b.csv").write_text("")),
    "scandir.ipynb": ("import os\nassert [e.name for e in os.scandir('s')] == ['a']", lambda root: (root / "s/b").write_text("")),
    "iterdir.ipynb": ("from pathlib import Path\nassert [p.name for p in Path('i').iterdir()] == ['a']",
                      lambda root: (root / "i/b").write_text("")),
    "pathglob.ipynb": ("from pathlib import Path\nassert len(list(Path('pg').glob('*.txt'))) == 1",
                       lambda root: (root / "pg/b.txt").write_text("")),
    "walk.ipynb": ("import os\nassert [f for _, _, files in os.walk('w') for f in files] == ['a']",
                   lambda root: ((root / "w/a").unlink(), (root / "w/a").mkdir())),
    "exists.ipynb": ("import os\nassert not os.path.exists('flag')", lambda root: (root / "flag").write_text("")),
    "pathexists.ipynb": ("from pathlib import Path\nassert Path('pflag').exists()", lambda root: (root / "pflag").unlink()),
    "kind.ipynb": ("import os, stat\nassert stat.S_ISREG(os.stat('kind').st_mode)",
                   lambda root: ((root / "kind").unlink(), (root / "kind").mkdir())),
    "fallback.ipynb": ("try:\n    value = open('optional.cfg').read()\nexcept FileNotFoundError:\n    value = 'default'\n"
                       "assert value == 'default'", lambda root: (root / "optional.cfg").write_text("custom")),
    "hidden.ipynb": ("assert open('.data/x.csv').read() == '1'", lambda root: (root / ".data/x.csv").write_text("2")),
    "dotenv.ipynb": ("assert 'DEBUG' not in open('.env').read()", lambda root: (root / ".env").write_text("DEBUG=1\n")),
    "sqlite.ipynb": ("import sqlite3\nassert sqlite3.connect('db.sqlite').execute('select v from t').fetchone() == (1,)",
                     lambda root: sqlite3.connect(root / "db.sqlite").execute("update t set v = 2").connection.commit()),
    "rplus.ipynb": ("with open('rw.txt', 'r+') as f:\n    assert f.read() == 'ok'", lambda root: (root / "rw.txt").write_text("bad")),
    "environ.ipynb": ("import os\nassert os.environ['MODE'] == 'secret-' + 'mode-4711'", lambda root: None),
    "getenv.ipynb": ("import os\nassert os.getenv('LEVEL') is None", lambda root: None),
    "contains.ipynb": ("import os\nassert 'FLAG' not in os.environ", lambda root: None),
    "copies.ipynb": ("import os\nassert 'LEVEL' not in os.environ.copy()", lambda root: None),
}


# notebook -> (its cell, what to change between the runs so that it fails): how a path is reached
RESOLVED = {
    "imp/shadows.ipynb": ("import yaml\nassert yaml.safe_load('a: 1') == {'a': 1}",
                          lambda root: (root / "imp/yaml.py").write_text("raise RuntimeError('shadowed')")),
    "ns/namespace.ipynb": ("from nspkg import mod\nassert mod.VALUE == 1",
                           lambda root: (root / "ns/nspkg/__init__.py").write_text("raise ImportError('broken')")),
    "link.ipynb": ("assert open('data/current.txt').read() == 'good'",
                   lambda root: ((root / "data/current.txt").unlink(), (root / "data/current.txt").symlink_to("v2.txt"))),
    "access.ipynb": ("import os\nassert not os.access('BROKEN', os.F_OK)", lambda root: (root / "BROKEN").write_text("")),
    "executable.ipynb": ("import os\nassert not os.access('tool.sh', os.X_OK)", lambda root: (root / "tool.sh").chmod(0o755)),
    "direntry.ipynb": ("import os\nassert all(entry.stat().st_size for entry in os.scandir('parts'))",
                       lambda root: (root / "parts/a.csv").write_text("")),
    "moved.ipynb": ("import os\nos.rename('input.txt', 'work.txt')\ntry:\n    assert open('work.txt').read() == 'good'\n"
                    "finally:\n    os.rename('work.txt', 'input.txt')", lambda root: (root / "input.txt").write_text("bad")),
}


@pytest.fixture
def patterns(project: Project) -> Project:
    for folder in ("d", "g", "s", "i", "pg", "w", ".data"):
        (project.root / folder).mkdir()
    for path, text in {"d/a": "", "w/a": "", "g/a.csv": "", "s/a": "", "i/a": "", "pg/a.txt": "", "pflag": "", "kind": "",
                       ".data/x.csv": "1", ".env": "X=1\n", "rw.txt": "ok"}.items():
        (project.root / path).write_text(text)
    with sqlite3.connect(project.root / "db.sqlite") as db:
        db.execute("create table t (v)")
        db.execute("insert into t values (1)")
    db.close()
    for name, (source, _) in PATTERNS.items():
        project.write(name, source)
    return project


def test_every_answer_a_notebook_got_is_checked_again(patterns: Project) -> None:
    first = cached_run(patterns, env={"MODE": "secret-mode-4711"})
    assert set(statuses(first).values()) == {"passed"}, first.stdout
    assert len(entries(patterns)) == len(PATTERNS)
    assert not any("secret-mode-4711" in path.read_text() for path in entries(patterns))  # hashed, never in clear
    again = cached_run(patterns, env={"MODE": "secret-mode-4711"})
    assert set(statuses(again).values()) == {"cached"}
    for _, change in PATTERNS.values():
        change(patterns.root)
    second = cached_run(patterns, env={"MODE": "another", "LEVEL": "1", "FLAG": ""})
    assert statuses(second) == {name: "failed" for name in PATTERNS}


def test_what_imports_links_access_and_scans_found_is_checked_again(project: Project) -> None:
    for folder in ("ns/nspkg", "data", "parts"):
        (project.root / folder).mkdir(parents=True)
    for path, text in {"ns/nspkg/mod.py": "VALUE = 1\n", "data/v1.txt": "good", "data/v2.txt": "bad", "tool.sh": "",
                       "parts/a.csv": "rows", "input.txt": "good"}.items():
        (project.root / path).write_text(text)
    (project.root / "data/current.txt").symlink_to("v1.txt")
    for name, (source, _) in RESOLVED.items():
        project.write(name, source)
    assert set(statuses(cached_run(project)).values()) == {"passed"}
    assert set(statuses(cached_run(project)).values()) == {"cached"}
    for _, change in RESOLVED.values():
        change(project.root)
    assert statuses(cached_run(project)) == {name: "failed" for name in RESOLVED}


def test_what_a_notebook_moves_removes_or_makes_is_checked_or_not_kept(project: Project) -> None:
    (project.root / "indir").mkdir()
    for path, text in {"stale.pid": "", "indir/x": "1", "long.txt": "good and more"}.items():
        (project.root / path).write_text(text)
    project.write("removes.ipynb", "import os\nos.remove('stale.pid')")
    project.write("claims.ipynb", "open('claim', 'x').close()")
    project.write("makes.ipynb", "import os\nos.mkdir('made')")
    project.write("moves_folder.ipynb", "import os\nos.rename('indir', 'outdir')\ntry:\n"
                                       "    assert open('outdir/x').read() == '1'\nfinally:\n    os.rename('outdir', 'indir')")
    project.write("truncates.ipynb", "import os\nos.truncate('long.txt', 4)\nassert open('long.txt').read() == 'good'")
    assert set(statuses(cached_run(project)).values()) == {"passed"}
    assert len(entries(project)) == 3  # a folder moved aside and a truncated input cannot be told whole
    (project.root / "indir/x").write_text("2")
    assert statuses(cached_run(project)) == {"removes.ipynb": "failed", "claims.ipynb": "failed", "makes.ipynb": "failed",
                                             "moves_folder.ipynb": "failed", "truncates.ipynb": "passed"}


def test_a_notebook_that_shadows_builtins_is_still_recorded(project: Project) -> None:
    (project.root / "data.csv").write_text("1")
    project.write("shadows.ipynb", "sorted = set = getattr = str = list = len = json = isinstance = None\n"
                                   "__import__ = object = type = None", "assert open('data.csv').read() == '1'")
    cached_run(project)
    assert statuses(cached_run(project)) == {"shadows.ipynb": "cached"}
    (project.root / "data.csv").write_text("2")
    assert statuses(cached_run(project)) == {"shadows.ipynb": "failed"}


def test_a_notebook_that_tampers_with_the_recorder_is_not_kept_or_misread(project: Project) -> None:
    (project.root / "data.csv").write_text("1")
    project.write("modules.ipynb", "import sys, types\nfake = types.ModuleType('_nbci_reads')\nfake.found = set()\n"
                                   "sys.modules['_nbci_reads'] = fake", "assert open('data.csv').read() == '1'")
    project.write("imitates.ipynb", "class Recording:\n    __module__ = '_nbci_reads'\n"
                                    "    report = staticmethod(lambda: '{\"complete\": true, \"answers\": {}}')",
                  "assert open('data.csv').read() == '1'")
    project.write("unwraps.ipynb", "import os, posix\nos.stat = posix.stat", "assert open('data.csv').read() == '1'")
    cached_run(project)
    assert [path.name for path in entries(project)] and len(entries(project)) == 1  # only modules.ipynb is kept
    (project.root / "data.csv").write_text("2")
    assert set(statuses(cached_run(project)).values()) == {"failed"}


def test_a_notebook_asking_too_much_is_not_kept(project: Project) -> None:
    project.write("walks.ipynb", "import os\nfor i in range(20001):\n    os.path.exists(f'n{i}')")
    cached_run(project)
    assert entries(project) == []


def test_links_and_fifos_are_never_followed_out_or_read(project: Project) -> None:
    (project.root / "data.csv").write_text("abc")
    project.write("reads.ipynb", "assert open('data.csv').read(3) == 'abc'")
    project.write("sub/plain.ipynb", "x = 1")
    os.mkfifo(project.root / "sub" / "requirements.txt")
    assert set(statuses(cached_run(project)).values()) == {"passed"}  # the FIFO never blocks the key
    (project.root / "requirements.txt").symlink_to("/dev/zero")
    (project.root / "data.csv").unlink()
    (project.root / "data.csv").symlink_to("/dev/zero")
    run = project.run("run", "--cache-dir", "nbci-cache", "--timeout", "60", timeout=120)
    assert statuses(run) == {"reads.ipynb": "failed", "sub/plain.ipynb": "passed"}
    assert "could not be used" in run.stdout


def test_answers_are_bounded_and_stay_inside_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "big").touch()
    os.truncate(root / "big", MAX_HASHED_BYTES + 1)  # sparse: never read
    (root / "outside").symlink_to(tmp_path)
    (tmp_path / "secret").write_text("x")
    (root / "small").write_text("x")
    assert path_answer(root, "big") is None and path_answer(root, "outside/secret") is None
    assert path_answer(root, "small").startswith("sha256:") and path_answer(root, "gone") == "missing"
    cache = ExecutionCache(tmp_path / "cache", root)
    assert cache.answer("import:small") == '["small"]' and cache.answer("access:small") == "file:1:rw-"
    assert cache.answer("import:outside/secret") is None and cache.answer("scan:outside") is None
    assert cache.answer("link:outside/secret") == os.path.realpath(tmp_path / "secret")  # named, never read


def test_what_a_notebook_makes_is_its_own_and_what_it_changes_is_not_kept(project: Project) -> None:
    (project.root / "state").write_text("fresh")
    project.write("makes.ipynb", "import os, shutil\nshutil.rmtree('out', ignore_errors=True)\n"
                                 "os.makedirs('out/deep', exist_ok=True)\nopen('out/deep/x.txt', 'w').write('1')\n"
                                 "assert os.listdir('out') == ['deep'] and open('out/deep/x.txt').read() == '1'")
    project.write("changes.ipynb", "assert open('state').read() == 'fresh'\nopen('state', 'w').write('used')")
    cached_run(project)
    assert len(entries(project)) == 1  # makes.ipynb; changes.ipynb changed what it read
    assert statuses(cached_run(project))["changes.ipynb"] == "failed"
    # out/ was missing before the first run and is there now, which a check could tell apart: run
    # once more, and from then on what the notebook wrote there never makes it miss
    assert statuses(cached_run(project)) == {"makes.ipynb": "cached", "changes.ipynb": "failed"}


def test_the_import_systems_own_listings_are_not_questions(project: Project) -> None:
    (project.root / "helpers.py").write_text("ANSWER = 42\n")
    project.write("imports.ipynb", "import importlib\nimportlib.invalidate_caches()  # the import system lists '.' again",
                  "import helpers\nassert helpers.ANSWER == 42")
    project.run("run", "--cache-dir", "nbci-cache", "--output-dir", "out1")
    again = project.run("run", "--cache-dir", "nbci-cache", "--output-dir", "out2")  # '.' has other names now
    assert statuses(again) == {"imports.ipynb": "cached"}
    (project.root / "helpers.py").write_text("ANSWER = 43\n")
    changed = project.run("run", "--cache-dir", "nbci-cache", "--output-dir", "out3")
    assert statuses(changed) == {"imports.ipynb": "failed"}


def test_only_a_whole_recording_of_unchanged_files_is_kept(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("x")
    cache = ExecutionCache(tmp_path / "cache", tmp_path)
    real = os.path.realpath(tmp_path / "a.txt")
    modified = os.stat(real).st_mtime_ns
    kept = cache.relative_reads({"complete": True, "answers": {f"file:{real}": "file:1", "env:NBCI_TEST_UNSET": ""},
                                 "opened": {real: modified}})
    assert kept == {"file:a.txt": cache.answer("file:a.txt"), "env:NBCI_TEST_UNSET": "unset"}
    assert cache.relative_reads({"complete": True, "answers": {f"file:{real}": "file:1"}, "opened": {real: modified + 1}}) is None
    assert cache.relative_reads({"complete": False, "answers": {}, "opened": {}}) is None
    assert cache.relative_reads({"complete": True, "answers": ["file:a.txt"], "opened": {}}) is None
    assert cache.relative_reads({"complete": True, "answers": {"file:/etc/hostname": "file:1"}, "opened": {}}) is None
