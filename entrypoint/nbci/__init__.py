"""nbci: prove that a repository's Jupyter notebooks still run."""

__version__ = "1.0.0"

import os as _os

# The folder holding this package: where nbci starts its own Python processes, never a repository,
# since a new Python puts its starting folder first on sys.path (a repository's json.py must not load).
INSTALL_FOLDER = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
