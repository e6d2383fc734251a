"""Shards: a deterministic, exact and balanced split; ``nbci list --json/--shards`` and ``run --shard``."""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path
from typing import Dict, List, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import Project
from nbci.errors import ConfigError
from nbci.results import RunResult
from nbci.shard import Shard, matrix, parse_shard, select_shard, split

paths_strategy = st.lists(st.from_regex(r"[a-z]{1,3}(/[a-z]{1,3}){0,2}\.ipynb", fullmatch=True), unique=True, max_size=40)
weight_strategy = st.floats(min_value=0.001, max_value=1e4, allow_nan=False, allow_infinity=False)


def loads(shards: Sequence[Sequence[str]], weights: Dict[str, float]) -> List[float]:
    return [sum(weights[p] for p in shard) for shard in shards]


def optimal_makespan(weights: Sequence[float], count: int) -> float:
    """The best possible largest shard, by trying every assignment (small inputs only)."""
    best = float("inf")
    for assignment in itertools.product(range(count), repeat=len(weights)):
        totals = [0.0] * count
        for weight, shard in zip(weights, assignment):
            totals[shard] += weight
        best = min(best, max(totals))
    return best


# --- parse_shard ---------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [("1/4", Shard(1, 4)), ("4/4", Shard(4, 4)), (" 2 / 3 ", Shard(2, 3)),
                                            ("1/1", Shard(1, 1))])
def test_parse_shard_accepts_i_of_n(text: str, expected: Shard) -> None:
    assert parse_shard(text) == expected
    assert str(parse_shard(text)) == f"{expected.index}/{expected.count}"


@pytest.mark.parametrize("text", ["0/2", "3/2", "a/b", "1/0", "0/0", "", "2", "1/2/3", "-1/2", "1.5/2", "1 of 2"])
def test_parse_shard_refuses_anything_else_with_one_line(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_shard(text)
    message = str(info.value)
    assert message.startswith(f"--shard {text!r}") and "\n" not in message and "1/" in message


# --- split: properties ---------------------------------------------------------------------------

@given(paths=paths_strategy, count=st.integers(1, 12), data=st.data())
def test_shards_partition_the_paths_exactly(paths: List[str], count: int, data: st.DataObject) -> None:
    weights = {p: data.draw(weight_strategy) for p in paths}
    shards = split(paths, weights, count)
    assert len(shards) == count
    flat = [p for shard in shards for p in shard]
    assert sorted(flat) == sorted(paths)  # every notebook once: none lost, none twice
    assert all(shard == sorted(shard) for shard in shards)
    assert [select_shard(paths, weights, Shard(i, count)) for i in range(1, count + 1)] == shards


@given(paths=paths_strategy, count=st.integers(1, 8), seed=st.integers(0, 2**32), data=st.data())
def test_split_does_not_depend_on_input_order(paths: List[str], count: int, seed: int, data: st.DataObject) -> None:
    weights = {p: data.draw(st.sampled_from([1.0, 2.0, 2.5, 7.0])) for p in paths}  # many ties on purpose
    shuffled = list(paths)
    random.Random(seed).shuffle(shuffled)
    reordered_weights = dict(sorted(weights.items(), reverse=True))
    assert split(shuffled, reordered_weights, count) == split(paths, weights, count)


@given(paths=paths_strategy, count=st.integers(1, 12), data=st.data())
def test_largest_shard_is_at_most_the_ideal_plus_the_largest_notebook(
        paths: List[str], count: int, data: st.DataObject) -> None:
    weights = {p: data.draw(weight_strategy) for p in paths}
    makespan = max(loads(split(paths, weights, count), weights))
    ideal = sum(weights.values()) / count
    assert makespan <= ideal + max(weights.values(), default=0.0) + 1e-6


@given(paths=paths_strategy, count=st.integers(2, 12), data=st.data())
def test_each_shard_got_its_lightest_notebook_while_it_was_the_least_loaded(
        paths: List[str], count: int, data: st.DataObject) -> None:
    weights = {p: data.draw(weight_strategy) for p in paths}
    shards = split(paths, weights, count)
    totals = loads(shards, weights)
    for i, shard in enumerate(shards):
        if shard:
            before_last = totals[i] - min(weights[p] for p in shard)
            assert all(before_last <= totals[j] + 1e-6 for j in range(count) if j != i)


@settings(max_examples=60)
@given(weights=st.lists(st.integers(1, 100).map(float), min_size=1, max_size=7), count=st.integers(2, 3))
def test_largest_shard_is_within_four_thirds_of_the_optimum(weights: List[float], count: int) -> None:
    named = {f"nb{i}.ipynb": w for i, w in enumerate(weights)}
    makespan = max(loads(split(list(named), named, count), named))
    assert makespan <= (4 / 3 - 1 / (3 * count)) * optimal_makespan(weights, count) + 1e-9


@given(paths=paths_strategy, count=st.integers(1, 12))
def test_equal_weights_give_shards_that_differ_by_at_most_one_notebook(paths: List[str], count: int) -> None:
    sizes = [len(shard) for shard in split(paths, {p: 1.0 for p in paths}, count)]
    assert max(sizes) - min(sizes) <= 1


# --- split: examples -----------------------------------------------------------------------------

def skewed() -> Dict[str, float]:
    """A typical docs repository: one heavy notebook, a few medium ones, a long tail of quick ones."""
    durations = [600.0, 300.0, 120.0] + [60.0] * 5 + [10.0] * 20 + [1.0] * 50
    return {f"nb{i:02d}.ipynb": d for i, d in enumerate(durations)}


def test_skewed_durations_give_the_heaviest_notebook_a_shard_of_its_own() -> None:
    weights = skewed()
    shards = split(list(weights), weights, 4)
    totals = loads(shards, weights)
    assert max(totals) == 600.0  # the optimum: nothing can finish before the heaviest notebook
    assert ["nb00.ipynb"] in shards
    assert max(totals[i] for i in range(4) if shards[i] != ["nb00.ipynb"]) - \
        min(totals[i] for i in range(4) if shards[i] != ["nb00.ipynb"]) <= 10.0


def test_skewed_durations_with_many_shards_stay_within_the_lpt_bound() -> None:
    rng = random.Random(6)
    weights = {f"nb{i:03d}.ipynb": round(rng.paretovariate(1.2) * 5, 3) for i in range(120)}
    for count in (2, 3, 4, 8):
        makespan = max(loads(split(list(weights), weights, count), weights))
        lower_bound = max(sum(weights.values()) / count, max(weights.values()))
        assert makespan <= lower_bound + max(weights.values())
        assert makespan <= 1.05 * lower_bound  # many small notebooks fill the gaps


def test_more_shards_than_notebooks_leaves_empty_shards() -> None:
    shards = split(["b.ipynb", "a.ipynb"], {"a.ipynb": 1.0, "b.ipynb": 5.0}, 4)
    assert shards == [["b.ipynb"], ["a.ipynb"], [], []]


def test_split_refuses_zero_shards() -> None:
    with pytest.raises(ConfigError, match="--shards must be between 1 and 256"):
        split(["a.ipynb"], {}, 0)


def test_matrix_is_a_github_include_list() -> None:
    entries = matrix(["a.ipynb", "b.ipynb", "c.ipynb"], {"a.ipynb": 3.0, "b.ipynb": 2.0, "c.ipynb": 2.0}, 2)
    assert entries == [{"shard": "1/2", "notebooks": ["a.ipynb"]},
                       {"shard": "2/2", "notebooks": ["b.ipynb", "c.ipynb"]}]


def test_results_summary_names_the_shard_only_when_sharded() -> None:
    assert "shard" not in RunResult([]).summary()
    assert RunResult([], shard="2/3").summary()["shard"] == "2/3"


# --- CLI -----------------------------------------------------------------------------------------

def write_results_json(path: Path, durations: Dict[str, float]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    notebooks = [{"path": p, "status": "passed", "duration": d} for p, d in durations.items()]
    path.write_text(json.dumps({"schema_version": 1, "notebooks": notebooks, "summary": {}}), encoding="utf-8")
    return path


@pytest.fixture
def four(project: Project) -> Project:
    """Four quick notebooks; ``big.ipynb`` is the largest file, ``small.ipynb`` the smallest."""
    project.write("big.ipynb", "x = 1", "# " + "padding " * 400, "print('big')")
    project.write("docs/one.ipynb", "print('one')", "# " + "padding " * 100)
    project.write("docs/two.ipynb", "print('two')", "# " + "padding " * 100)
    project.write("small.ipynb", "print(1)")
    return project


ALL_FOUR = ["big.ipynb", "docs/one.ipynb", "docs/two.ipynb", "small.ipynb"]


def test_list_prints_lines_or_a_json_array(four: Project) -> None:
    plain = four.run("list", "--exclude", "docs/two.ipynb")
    assert plain.code == 0, plain.stderr
    assert plain.stdout.splitlines() == ["big.ipynb", "docs/one.ipynb", "small.ipynb"]
    as_json = four.run("list", "--json")
    assert as_json.code == 0, as_json.stderr
    assert json.loads(as_json.stdout) == ALL_FOUR
    globbed = four.run("list", "docs/*.ipynb", "--json")
    assert json.loads(globbed.stdout) == ["docs/one.ipynb", "docs/two.ipynb"]


def test_list_shards_balances_by_file_size_without_durations(four: Project) -> None:
    listed = four.run("list", "--shards", "2")
    assert listed.code == 0, listed.stderr
    entries = json.loads(listed.stdout)
    assert [e["shard"] for e in entries] == ["1/2", "2/2"]
    assert entries[0]["notebooks"] == ["big.ipynb"]  # the largest file alone balances the rest
    assert sorted(entries[1]["notebooks"]) == ["docs/one.ipynb", "docs/two.ipynb", "small.ipynb"]


def test_list_shards_balances_by_previous_durations(four: Project) -> None:
    durations = {"small.ipynb": 50.0, "big.ipynb": 10.0, "docs/one.ipynb": 10.0, "docs/two.ipynb": 10.0}
    results = write_results_json(four.root / "previous" / "results.json", durations)
    listed = four.run("list", "--shards", "2", "--durations", str(results))
    assert listed.code == 0, listed.stderr
    assert json.loads(listed.stdout) == [{"shard": "1/2", "notebooks": ["small.ipynb"]},
                                         {"shard": "2/2", "notebooks": ["big.ipynb", "docs/one.ipynb",
                                                                        "docs/two.ipynb"]}]
    # a folder of per-shard results.json files (downloaded artifacts) balances the same way
    write_results_json(four.root / "artifacts" / "nbci-1-of-2" / "results.json", {"small.ipynb": 50.0})
    write_results_json(four.root / "artifacts" / "nbci-2-of-2" / "results.json",
                       {k: v for k, v in durations.items() if k != "small.ipynb"})
    from_folder = four.run("list", "--shards", "2", "--durations", "artifacts")
    assert from_folder.code == 0, from_folder.stderr
    assert from_folder.stdout == listed.stdout


def test_list_shards_more_than_notebooks_gives_empty_shards(four: Project) -> None:
    listed = four.run("list", "--shards", "6", "--exclude", "docs/**")
    entries = json.loads(listed.stdout)
    assert len(entries) == 6 and entries[5] == {"shard": "6/6", "notebooks": []}
    assert sorted(p for e in entries for p in e["notebooks"]) == ["big.ipynb", "small.ipynb"]


def test_run_shard_runs_exactly_the_listed_shard(four: Project) -> None:
    entries = json.loads(four.run("list", "--shards", "2").stdout)
    # outside the project, as on separate runners: one shard's copies are not the other's notebooks
    first = four.run("run", "--shard", "1/2", "--output-dir", "../out-1")
    second = four.run("run", "--output-dir", "../out-2", env={"NBCI_SHARD": "2/2"})
    ran = []
    for entry, run in zip(entries, (first, second)):
        assert run.code == 0, run.stdout + run.stderr
        paths = [nb["path"] for nb in run.results["notebooks"]]
        assert paths == entry["notebooks"]
        assert all(nb["status"] == "passed" for nb in run.results["notebooks"])
        assert run.results["summary"]["shard"] == entry["shard"]
        assert f"shard {entry['shard']} has {len(paths)} of 4 notebooks" in run.stderr
        ran += paths
    assert sorted(ran) == ALL_FOUR
    assert (first.output_dir / "big.ipynb").is_file() and not (first.output_dir / "small.ipynb").exists()
    assert (second.output_dir / "small.ipynb").is_file() and not (second.output_dir / "big.ipynb").exists()


def test_run_empty_shard_passes_and_says_so(four: Project) -> None:
    run = four.run("run", "--shard", "5/5", "small.ipynb", "big.ipynb")
    assert run.code == 0, run.stderr
    assert run.results["summary"]["total"] == 0 and run.results["summary"]["shard"] == "5/5"


@pytest.mark.parametrize("args, env", [
    (["run", "--shard", "0/2"], {}),
    (["run", "--shard", "3/2"], {}),
    (["run", "--shard", "a/b"], {}),
    (["run"], {"NBCI_SHARD": "2"}),
    (["list", "--shards", "0"], {}),
    (["list", "--shards", "two"], {}),
    (["run", "--durations", "missing.json", "--shard", "1/2"], {}),
])
def test_bad_shard_options_exit_2_with_one_line(four: Project, args: List[str], env: Dict[str, str]) -> None:
    run = four.run(*args, env=env)
    assert run.code == 2
    assert run.stdout == ""
    lines = run.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("nbci: error: "), run.stderr
    assert not (four.root / "nbci-output").exists()
