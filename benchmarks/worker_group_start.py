"""What a CNN trial's worker-group start is made of: Ray Train's `TensorflowTrainer` against its plain
`DataParallelTrainer` (no TensorFlow backend), each with a loop that only notes when it began, 1 worker;
with and without the worker runtime env speciesfam passes (TF's oneDNN setting). The difference between the
two trainers is TensorFlow's import in the new worker process.

    python benchmarks/worker_group_start.py --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

os.environ.setdefault("RAY_AUTH_MODE", "disabled")


def loop(config):
    import sys
    import time

    began = time.time()
    with open(config["out"], "w") as f:
        json.dump({"began": began, "tensorflow_imported": "tensorflow" in sys.modules}, f)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from ray.train import RunConfig, ScalingConfig
    from ray.train.tensorflow import TensorflowTrainer
    from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer

    from speciesfam.raycluster import init_ray
    from speciesfam.tune.search import WORKER_ENV

    init_ray(num_cpus=2)
    kinds = {"TensorflowTrainer + worker env": (TensorflowTrainer, {"env_vars": WORKER_ENV}),
             "TensorflowTrainer": (TensorflowTrainer, None), "DataParallelTrainer (no TensorFlow)": (DataParallelTrainer, None)}
    seconds: dict[str, list[float]] = {k: [] for k in kinds}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            for name, (trainer, env) in kinds.items():
                out = os.path.join(tmp, f"{i}-{len(seconds[name])}-{trainer.__name__}.json")
                extra = {"worker_runtime_env": env} if env else {}
                start = time.time()
                trainer(loop, train_loop_config={"out": out},
                        scaling_config=ScalingConfig(num_workers=1, resources_per_worker={"CPU": 0.5}),
                        run_config=RunConfig(name=f"{trainer.__name__}-{i}-{bool(env)}", storage_path=tmp,
                                             **extra)).fit()
                with open(out) as f:
                    seconds[name].append(json.load(f)["began"] - start)
    print("| trainer | fit() -> loop begins, s (each run) |\n|---|---|")
    for name, values in seconds.items():
        print(f"| {name} | {', '.join(f'{v:.2f}' for v in values)} |")


if __name__ == "__main__":
    main()
