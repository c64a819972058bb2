"""Export the best trial of a search as a bundle (flags as `speciesfam export --help`).

    ray job submit --working-dir . -- python jobs/export_best.py --workdir /nfs/run
    python jobs/export_best.py --workdir runs/demo --smoke-test
"""

import sys

import _common  # noqa: F401

from speciesfam.cli import main

argv = [a for a in sys.argv[1:] if a != "--smoke-test"]  # export is already quick; the flag is accepted for symmetry
sys.exit(main(["export", *argv]))
