"""Scaling with cores: ``nbci run --jobs N`` against ``pytest --nbmake -n N`` on a numpy-free mix.

The corpus has 128 notebooks: 80 tiny, 32 compute-bound (about 1 s of pure Python each) and 16
printing 20,000 lines plus a 2,000-row HTML table. For each jobs count the machine allows (1, 2, 4,
8, 16 up to its cores) the methods run interleaved, ``--repeat`` rounds; the report gives medians,
x floor (recorded cell time / N, or the longest notebook, + 0.2 s), nbci / nbmake, and the CPU the
coordinating nbci process used (``summary.engine_cpu``) and its helper processes used
(``summary.helpers_cpu``) per notebook. ``--one-process`` also times ``nbci --helpers 0``, every
kernel driven from one process, as the baseline for the helpers.

``--tiny-only`` runs just the 80 tiny notebooks, where the coordinating cost is all there is: the
issue's target is at most 10 ms of coordinating CPU per tiny notebook at ``--jobs 2``, best of 2.

Runs in run.py's virtualenv (nbmake, pytest-xdist, ipykernel, nbci). A machine that reaches no
package registry needs a wheelhouse: see ``../shared/bench/scaling/README.md``.

Usage: ``python benchmarks/scaling.py [--repeat 2] [--jobs 1,2,4,8,16] [--tiny-only] [--json out.json]``
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from run import DEFAULT_VENV_DIR, ensure_venv, log, venv_environ

KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}


def notebook(sources: Sequence[str]) -> dict:
    cells = [{"cell_type": "code", "execution_count": None, "id": f"c{i}", "metadata": {}, "outputs": [],
              "source": source} for i, source in enumerate(sources)]
    return {"cells": cells, "metadata": {"kernelspec": KERNELSPEC, "language_info": {"name": "python"}},
            "nbformat": 4, "nbformat_minor": 5}


def write_corpus(folder: Path, tiny_only: bool) -> int:
    """The 128-notebook mix (or its 80 tiny notebooks); return how many were written."""
    folder.mkdir(parents=True, exist_ok=True)
    books: Dict[str, dict] = {}
    for i in range(80):
        books[f"tiny_{i:02d}.ipynb"] = notebook([f"x = {i}\ny = x * 2\ny", "import math\nmath.sqrt(y + 1)",
                                                 "' '.join(['a', 'b'])", f"sum(k * k for k in range({100 + i}))",
                                                 "print('done')"])
    if not tiny_only:
        for i in range(32):
            books[f"compute_{i:02d}.ipynb"] = notebook(
                ["import time", f"t = 0\nfor k in range({12_000_000 + 50_000 * i}):\n    t += k % 7\nt", "print(t)"])
        for i in range(16):
            books[f"output_{i:02d}.ipynb"] = notebook(
                ["for k in range(20000):\n    print('line', k, 'x' * 40)",
                 "from IPython.display import HTML\nHTML('<table>' + '<tr><td>1</td></tr>' * 2000 + '</table>')"])
    for name, book in books.items():
        (folder / name).write_text(json.dumps(book))
    return len(books)


def cell_seconds(folder: Path) -> List[float]:
    """Each executed notebook's recorded cell time (nbclient's execute_input -> execute_reply)."""
    def parse(stamp: str) -> datetime.datetime:
        return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))

    per = []
    for path in folder.glob("*.ipynb"):
        total = 0.0
        for cell in json.loads(path.read_text())["cells"]:
            timing = cell.get("metadata", {}).get("execution", {})
            if "iopub.execute_input" in timing and "shell.execute_reply" in timing:
                total += (parse(timing["shell.execute_reply"]) - parse(timing["iopub.execute_input"])).total_seconds()
        per.append(total)
    return per


def timed(argv: List[str], cwd: Path, env: Dict[str, str], failures: Optional[List[str]] = None) -> float:
    """Wall seconds of one run; a failing run stops the benchmark, or is noted in ``failures`` when given
    (nbmake's own "NBMAKE INTERNAL ERROR"s under load are part of what is compared)."""
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=1800)
    took = time.perf_counter() - started
    if done.returncode != 0 and failures is None:
        raise SystemExit(f"{argv[:4]} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    if done.returncode != 0:
        failures.append(done.stdout.strip().splitlines()[-1] if done.stdout.strip() else f"exit {done.returncode}")
    return took


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--jobs", default=",".join(str(n) for n in (1, 2, 4, 8, 16) if n <= (os.cpu_count() or 1)))
    parser.add_argument("--tiny-only", action="store_true")
    parser.add_argument("--no-nbmake", action="store_true", help="time nbci alone")
    parser.add_argument("--one-process", action="store_true",
                        help="also time nbci --helpers 0 (every kernel driven from one process)")
    parser.add_argument("--fork", action="store_true",
                        help="also time nbci --kernel-start fork (with PYTHONHASHSEED=0, which it needs)")
    parser.add_argument("--venv-dir", type=Path, default=DEFAULT_VENV_DIR)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    python = ensure_venv(args.venv_dir)
    env = dict(venv_environ(args.venv_dir), MPLBACKEND="Agg", PYDEVD_DISABLE_FILE_VALIDATION="1")
    methods = ["nbci"] + (["one process"] if args.one_process else []) + (["fork"] if args.fork else []) \
        + ([] if args.no_nbmake else ["nbmake"])
    variants = {"nbci": [], "one process": ["--helpers", "0"], "fork": ["--kernel-start", "fork"]}
    rows = []
    with tempfile.TemporaryDirectory(prefix="nbci-bench-scaling-") as tmp:
        corpus = Path(tmp) / "corpus"
        count = write_corpus(corpus, args.tiny_only)
        for jobs in (int(n) for n in args.jobs.split(",")):
            times: Dict[str, List[float]] = {method: [] for method in methods}
            cpu: Dict[str, List[float]] = {"engine_cpu": [], "helpers_cpu": []}
            nbmake_failures: List[str] = []
            out = Path(tmp) / f"out-{jobs}"
            nbci = [str(python), "-m", "nbci", "run", ".", "--jobs", str(jobs), "--heartbeat", "0", "--timeout", "600",
                    "--output-dir", str(out)]
            for round_ in range(args.repeat):
                for method in methods if round_ % 2 == 0 else methods[::-1]:
                    if method == "nbmake":
                        times[method].append(timed([str(python), "-m", "pytest", "--nbmake", "-n", str(jobs), "-q",
                                                    "-p", "no:cacheprovider", "--nbmake-timeout=600", "."], corpus, env,
                                                   nbmake_failures))
                    else:
                        times[method].append(timed(nbci + variants[method], corpus,
                                                   dict(env, PYTHONHASHSEED="0") if method == "fork" else env))
                    if method == "nbci":
                        summary = json.loads((out / "results.json").read_text())["summary"]
                        for key in cpu:
                            cpu[key].append(summary.get(key) or 0.0)
                    log(f"jobs {jobs} round {round_ + 1} {method}: {times[method][-1]:.2f} s")
            cells = cell_seconds(out)
            floor = max(sum(cells) / jobs, max(cells)) + 0.2
            row = {"jobs": jobs, "notebooks": count, "floor": floor, "nbmake_failures": nbmake_failures}
            row.update({method: statistics.median(times[method]) for method in methods})
            row.update({f"{key}_ms_per_notebook": 1000 * min(values) / count for key, values in cpu.items()})
            rows.append(row)
    print("\n".join(table(rows, methods, f"{count} notebooks{', tiny only' if args.tiny_only else ''}, "
                                        f"{os.cpu_count()} CPUs, median of {args.repeat}")))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


def table(rows: List[dict], methods: List[str], title: str) -> List[str]:
    """The report: seconds and x floor per method, nbci / nbmake, and nbci's own CPU per notebook."""
    header = ["jobs", "floor s"] + [f"{m} s (x floor)" for m in methods]
    header += ["nbci / nbmake"] if "nbmake" in methods else []
    header += ["coordinating CPU per notebook", "helpers' CPU per notebook"]
    lines = [f"## Scaling ({title})", "", "| " + " | ".join(header) + " |", "|" + " ---: |" * len(header)]
    for row in rows:
        cells = [str(row["jobs"]), f"{row['floor']:.2f}"] + [f"{row[m]:.2f} ({row[m] / row['floor']:.2f})"
                                                               for m in methods]
        cells += [f"{row['nbci'] / row['nbmake']:.2f}"] if "nbmake" in methods else []
        cells += [f"{row['engine_cpu_ms_per_notebook']:.1f} ms", f"{row['helpers_cpu_ms_per_notebook']:.1f} ms"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [f"\nnbmake at {row['jobs']} jobs did not pass: {'; '.join(row['nbmake_failures'])}"
              for row in rows if row.get("nbmake_failures")]
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
