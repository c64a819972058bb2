"""Search transfer-learning models on ImageNet backbones (flags as `speciesfam tune transfer --help`).

    ray job submit --working-dir . -- python jobs/tune_transfer.py --workdir s3://bucket/run \
        --image-size 224 --gpus-per-worker 1 --num-samples 60
    python jobs/tune_transfer.py --workdir runs/demo --smoke-test --weights none --cpus-per-worker 0.5
"""

import _common

_common.run(["tune", "transfer"])
