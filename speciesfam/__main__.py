"""``python -m speciesfam``: the ``speciesfam`` command (for environments whose scripts folder is not on PATH)."""

import sys

from .cli import entry

sys.exit(entry())
