"""Search embedding-probe heads on the cached CLIP embeddings (flags as `speciesfam tune probe --help`).

    ray job submit --working-dir . -- python jobs/tune_probe.py --workdir s3://bucket/run --num-samples 200
    python jobs/tune_probe.py --workdir runs/demo --smoke-test     # after clean_data.py
"""

import sys

import _common  # noqa: F401

from speciesfam.cli import main

sys.exit(main(["tune", "probe", *sys.argv[1:]]))
