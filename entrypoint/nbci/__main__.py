"""``python -m nbci``: the same entry point as the ``nbci`` console script."""

import sys

from nbci.cli import main

sys.exit(main())
