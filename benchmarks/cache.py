"""The execution cache on the 20-notebook corpus: a cold run, an unchanged re-run, a one-edit re-run.

Each round writes a fresh corpus and a fresh cache folder, then times, one after the other:
``cold`` (empty cache: everything runs and is stored), ``unchanged`` (the same files: everything is
reused; what is left is nbci's start-up and the kernel environment's fingerprint) and ``one edit``
(one compute notebook gains a code cell: it alone runs). Medians over ``--repeat`` rounds, with the
ratios the execution cache is held to: unchanged / cold, and one-edit / (the edited notebook's own
cold duration + the unchanged run).

Runs in the benchmark virtualenv of ``run.py`` (numpy, pandas, matplotlib, ipykernel, nbci).

Usage: ``python benchmarks/cache.py [--repeat 3] [--jobs 2] [--json out.json]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import corpus
from run import DEFAULT_VENV_DIR, ensure_venv, log, venv_environ

EDITED = "compute_00.ipynb"
SCENARIOS = ("cold", "unchanged", "one edit")


def timed_run(python: Path, folder: Path, cache: Path, jobs: int, env: Dict[str, str]) -> Dict:
    """One ``nbci run`` with the cache; its wall seconds and results.json."""
    started = time.perf_counter()
    done = subprocess.run([str(python), "-m", "nbci", "run", ".", "--jobs", str(jobs), "--cache-dir", str(cache),
                           "--heartbeat", "0", "--timeout", "600"], cwd=folder, env=env, capture_output=True,
                          text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"nbci failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return {"seconds": seconds, "results": json.loads((folder / "nbci-output" / "results.json").read_text())}


def edit(folder: Path) -> None:
    """Give one notebook one more code cell, as a push that touches one notebook would."""
    path = folder / EDITED
    nb = json.loads(path.read_text())
    nb["cells"].append({"cell_type": "code", "execution_count": None, "id": "bench-edit", "metadata": {},
                        "outputs": [], "source": "edited = True"})
    path.write_text(json.dumps(nb))


def one_round(python: Path, jobs: int, env: Dict[str, str]) -> Dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="nbci-bench-cache-") as tmp:
        folder, cache = Path(tmp) / "corpus", Path(tmp) / "cache"
        corpus.write_corpus(folder)
        cold = timed_run(python, folder, cache, jobs, env)
        unchanged = timed_run(python, folder, cache, jobs, env)
        edit(folder)
        edited = timed_run(python, folder, cache, jobs, env)
    statuses = {name: run["results"]["summary"]["statuses"] for name, run in
                (("cold", cold), ("unchanged", unchanged), ("one edit", edited))}
    assert statuses["unchanged"] == {"cached": 20} and statuses["one edit"] == {"cached": 19, "passed": 1}, statuses
    own = next(nb["duration"] for nb in cold["results"]["notebooks"] if nb["path"] == EDITED)
    times = {"cold": cold["seconds"], "unchanged": unchanged["seconds"], "one edit": edited["seconds"],
             "edited notebook, cold": own}
    log("  " + ", ".join(f"{k} {v:.2f} s" for k, v in times.items()))
    return times


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--venv-dir", type=Path, default=DEFAULT_VENV_DIR)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    python = ensure_venv(args.venv_dir)
    env = venv_environ(args.venv_dir)
    rounds: List[Dict[str, float]] = []
    for index in range(args.repeat):
        log(f"round {index + 1}/{args.repeat}")
        rounds.append(one_round(python, args.jobs, env))
    median = {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
    lines = [f"## Execution cache benchmark (20-notebook corpus, --jobs {args.jobs}, median of {args.repeat})", "",
             "| run | median s | / cold |", "| --- | ---: | ---: |"]
    lines += [f"| {key} | {median[key]:.2f} | {median[key] / median['cold']:.3f} |" for key in SCENARIOS]
    budget = median["edited notebook, cold"] + median["unchanged"]
    lines += ["", f"- unchanged / cold: {median['unchanged'] / median['cold']:.3f} (target <= 0.10)",
              f"- one edit / (edited notebook's cold duration {median['edited notebook, cold']:.2f} s + unchanged run): "
              f"{median['one edit'] / budget:.2f} (target <= 1.00)"]
    print("\n".join(lines))
    if args.json:
        args.json.write_text(json.dumps({"rounds": rounds, "median": median}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
