"""Transfer learning from ImageNet backbones with a dense/dropout/batch-norm head, two-phase fine-tuning.

Command (GPU cluster, reference data, ImageNet weights, ~3 h on 4 GPUs):
    ray job submit --working-dir . -- python jobs/tune_transfer.py --workdir s3://bucket/run \
        --num-samples 60 --max-epochs 20 --image-size 224 --gpus-per-worker 1
Smoke run (2 CPUs, offline, random weights, tiny images, ~3 min):
    python jobs/tune_transfer.py --workdir runs/demo --smoke-test
Metric: val_macro_f1 (max). Earlier work on the reference data reached ~0.60 with Xception/ResNet50V2/
EfficientNet heads and ~0.80 with ConvNeXt after CLIP filtering.
"""

from __future__ import annotations


def get_search_space(smoke: bool = False) -> dict:
    from ray import tune

    if smoke:  # the smallest backbone, few epochs: proves the wiring, not the accuracy
        return {
            "model": "mobilenetv3small",
            "head_units": tune.choice([16, 32]),
            "dropout": tune.uniform(0.0, 0.3),
            "lr": tune.loguniform(1e-3, 1e-2),
            "batch_size": 16,
            "unfreeze_layers": 10,
        }
    return {
        "model": tune.choice(["xception", "resnet50v2", "efficientnetb0", "efficientnetb3", "efficientnetv2s",
                              "convnexttiny", "mobilenetv3large"]),
        "head_units": tune.choice([128, 256, 512, 1024]),
        "head_layers": tune.choice([1, 2]),
        "batch_norm": tune.choice([True, False]),
        "dropout": tune.uniform(0.1, 0.6),
        "augment": tune.uniform(0.0, 1.0),
        "lr": tune.loguniform(1e-4, 3e-3),
        "finetune_lr_factor": tune.loguniform(0.01, 0.3),
        "unfreeze_layers": tune.choice([0, 20, 40, 80]),
        "batch_size": tune.choice([32, 64]),
        "optimizer": tune.choice(["adam", "adamw"]),
        "label_smoothing": tune.uniform(0.0, 0.2),
        "class_weighting": tune.choice(["balanced", "none"]),
    }
