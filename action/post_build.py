"""Run the repository's postBuild (repo2docker's), as the repository's own code: ``post_build.py SCRIPT``.

Run by action.yml with the notebooks' Python (through in_env.sh, so the environment is active),
from the working directory. The script runs with bash, without the runner's command files and
tokens, and its output reaches the log with no workflow command left in it (``common.run``).
"""

from __future__ import annotations

import sys
from typing import Dict, Mapping

from common import main, run


def post_build(environ: Mapping[str, str]) -> Dict[str, str]:
    """Run postBuild (the first argument) with bash; no step outputs."""
    run(["bash", sys.argv[1]], env=environ)
    return {}


if __name__ == "__main__":
    sys.exit(main("Run postBuild", post_build))
