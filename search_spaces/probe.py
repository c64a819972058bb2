"""Embedding probe: a dense head on the clean stage's cached CLIP embeddings (seconds per trial on a CPU).

Command (2 CPUs, after `speciesfam clean`, ~1 min for 20 trials):
    speciesfam tune probe --workdir runs/demo --num-samples 20 --max-epochs 30
Metric: val_macro_f1 (max). A strong probe says the embeddings separate the families well; its best
settings (dropout, label smoothing, class weighting, learning rate) are a good prior for the CNN spaces.
"""

from __future__ import annotations


def get_search_space(smoke: bool = False) -> dict:
    from ray import tune

    if smoke:
        return {"head_units": tune.choice([32, 64]), "dropout": tune.uniform(0.0, 0.3),
                "lr": tune.loguniform(1e-3, 1e-2), "batch_size": 32}
    return {
        "head_units": tune.choice([64, 128, 256, 512]),
        "head_layers": tune.choice([1, 2]),
        "dropout": tune.uniform(0.0, 0.6),
        "lr": tune.loguniform(1e-4, 1e-2),
        "batch_size": tune.choice([32, 64, 128]),
        "optimizer": tune.choice(["adam", "adamw", "sgd"]),
        "weight_decay": tune.loguniform(1e-5, 1e-2),
        "label_smoothing": tune.uniform(0.0, 0.2),
        "class_weighting": tune.choice(["balanced", "none"]),
    }
