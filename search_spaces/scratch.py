"""CNNs from scratch (sequential and residual) on the cleaned data.

Command (2 CPUs, demo data, ~3 min):
    speciesfam tune scratch --workdir runs/demo --smoke-test
Full search (GPU cluster, reference data, ~2 h on 4 GPUs):
    ray job submit --working-dir . -- python jobs/tune_scratch.py --workdir s3://bucket/run --num-samples 40 \
        --max-epochs 40 --gpus-per-worker 1
Metric: val_macro_f1 (max). Expect scratch CNNs to overfit the reference data (~0.3-0.4 macro-F1):
they are the baseline the transfer space must beat.
"""

from __future__ import annotations


def get_search_space(smoke: bool = False) -> dict:
    from ray import tune

    if smoke:  # tiny models so a 2-CPU machine finishes a trial in seconds
        return {
            "model": tune.choice(["scratch_sequential", "scratch_functional"]),
            "filters": tune.choice([8, 12]),
            "depth": 2,
            "head_units": tune.choice([16, 32]),
            "dropout": tune.uniform(0.0, 0.3),
            "lr": tune.loguniform(1e-3, 5e-3),
            "batch_size": 16,
        }
    return {
        "model": tune.choice(["scratch_sequential", "scratch_functional"]),
        "filters": tune.choice([16, 32, 48]),
        "depth": tune.randint(3, 6),
        "batch_norm": tune.choice([True, False]),
        "pooling": tune.choice(["avg", "flatten"]),
        "head_units": tune.choice([128, 256, 512]),
        "head_layers": tune.choice([1, 2]),
        "dropout": tune.uniform(0.1, 0.6),
        "augment": tune.uniform(0.0, 1.0),
        "lr": tune.loguniform(1e-4, 3e-3),
        "batch_size": tune.choice([32, 64]),
        "optimizer": tune.choice(["adam", "adamw", "sgd"]),
        "label_smoothing": tune.uniform(0.0, 0.2),
        "class_weighting": tune.choice(["balanced", "none"]),
    }
