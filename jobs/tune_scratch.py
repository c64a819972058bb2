"""Search CNNs trained from scratch (flags as `speciesfam tune scratch --help`).

    ray job submit --working-dir . -- python jobs/tune_scratch.py --workdir s3://bucket/run --gpus-per-worker 1
    python jobs/tune_scratch.py --workdir runs/demo --smoke-test --cpus-per-worker 0.5   # after clean_data.py
"""

import _common

_common.run(["tune", "scratch"])
