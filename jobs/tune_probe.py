"""Search embedding-probe heads on the cached CLIP embeddings (flags as `speciesfam tune probe --help`).

    ray job submit --working-dir . -- python jobs/tune_probe.py --workdir s3://bucket/run --num-samples 200
    python jobs/tune_probe.py --workdir runs/demo --smoke-test     # after clean_data.py
"""

import _common

_common.run(["tune", "probe"])
