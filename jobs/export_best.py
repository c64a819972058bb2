"""Export the best trial of a search as a bundle (flags as `speciesfam export --help`).

    ray job submit --working-dir . -- python jobs/export_best.py --workdir /nfs/run
    python jobs/export_best.py --workdir runs/demo --smoke-test
"""

import _common

# export is quick already, and runs no Ray: accepted for symmetry with the other jobs
_common.run(["export"], ignored=("--smoke-test",), ignored_values=("--address",))
