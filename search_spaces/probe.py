"""Embedding probe: a dense head on the clean stage's cached CLIP embeddings (seconds per trial on a CPU).

Command (2 CPUs, after `speciesfam clean`, well under a minute for 20 trials on the demo data):
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
    # Adam(W) only: on L2-normalised embeddings SGD needs a learning rate near 1 (measured: val macro-F1
    # 0.06-0.34 with SGD in this lr range against 0.92 with AdamW). Batches of 64+: a probe epoch is a few
    # thousand rows, and small batches cost time per epoch without better heads.
    return {
        "head_units": tune.choice([64, 128, 256, 512]),
        "head_layers": tune.choice([1, 2]),
        "dropout": tune.uniform(0.0, 0.6),
        "lr": tune.loguniform(3e-4, 1e-2),
        "batch_size": tune.choice([64, 128, 256]),
        "optimizer": tune.choice(["adam", "adamw"]),
        "weight_decay": tune.loguniform(1e-5, 1e-2),
        "label_smoothing": tune.uniform(0.0, 0.2),
        "class_weighting": tune.choice(["balanced", "none"]),
    }
