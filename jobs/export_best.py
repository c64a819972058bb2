"""Export the best trial of a search as a bundle (flags as `speciesfam export --help`).

    ray job submit --working-dir . -- python jobs/export_best.py --workdir /nfs/run
    python jobs/export_best.py --workdir runs/demo --smoke-test
"""

import _common

_common.run(["export"], ignored=("--smoke-test",))  # export is quick already: accepted for symmetry
