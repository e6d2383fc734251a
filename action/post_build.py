"""Run the repository's postBuild (repo2docker's), as the repository's own code: ``post_build.py SCRIPT``.

Run by action.yml with the notebooks' Python (through in_env.sh, so the environment is active),
from the working directory, and only when this job has notebooks to run: the engine
(NBCI_ENGINE) lists them as the run will select them (NBCI_NOTEBOOKS, NBCI_EXCLUDE,
NBCI_CHANGED_SINCE, the shard NBCI_SHARD balanced by NBCI_DURATIONS). The script runs with bash,
without the runner's command files and tokens, and its output reaches the log with no workflow
command left in it (``common.run``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Mapping

from common import main, required, run, without_runner_files


def selected(environ: Mapping[str, str]) -> List[str]:
    """The notebooks this job runs, as the engine selects them; none when it cannot list them."""
    shard = environ.get("NBCI_SHARD", "").strip()
    count = ["--shards", shard.split("/")[1]] if shard else ["--json"]
    env = without_runner_files(environ)
    if not Path(env.get("NBCI_DURATIONS") or ".").is_dir():
        del env["NBCI_DURATIONS"]  # none restored: the split goes by file size, as in the run
    proc = subprocess.run([required(environ, "NBCI_ENGINE"), "list", "--if-no-notebooks", "ignore", *count], env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if proc.returncode != 0:
        return []  # the run step says why
    listed = json.loads(proc.stdout)
    if shard:
        listed = next((entry["notebooks"] for entry in listed if entry["shard"] == shard), [])
    return [str(path) for path in listed]


def post_build(environ: Mapping[str, str]) -> Dict[str, str]:
    """Run postBuild (the first argument) with bash when notebooks will run; no step outputs."""
    if not selected(environ):
        print("notebook-ci: no notebook to run in this job: postBuild is not run", flush=True)
        return {}
    run(["bash", sys.argv[1]], env=environ)
    return {}


if __name__ == "__main__":
    sys.exit(main("Run postBuild", post_build))
