"""Optuna TPE told what each trial is worth: its best epoch if it ran its course, "pruned" if it was cut.

Ray's ``OptunaSearch`` completes an Optuna trial with the trial's last reported value. A speciesfam trial is
worth its best epoch (``trials.csv`` ranks by ``best_val_macro_f1``; export ships the best checkpoint), and its
last epoch is lower whenever its own early stopping waited out its patience, so a trial that ran its course
(its last report says ``final_epoch``: ``max_epochs`` reached or its patience out) completes with the best of
its reports. The result on which a scheduler stops a trial reaches only ``on_trial_complete`` (Tune's
controller), so it is counted there too (Ray's class left it out: a trial ASHA stopped at ``max_epochs`` was
worth its second-to-last epoch, and a trial cut at its first rung reached Optuna with no value at all).

A trial the scheduler cut (ASHA at a rung) has a value at 3 or 6 epochs, not at the 30 a finished trial had:
completing it with that value mixes budgets, and TPE learnt from who starts fastest (benchmarks/RESULTS.md,
"ASHA's grace period"). It is told to Optuna as PRUNED instead, with its per-epoch values (reported as Optuna
intermediate values, as in Ray's class): Optuna's TPE ranks pruned trials below every completed one, among
themselves by how far they got and then by their value there, the way Optuna's own pruners are meant to be
used with it. Failed trials stay failed.
"""

from __future__ import annotations

import math

from ray.tune.result import TRAINING_ITERATION
from ray.tune.search.optuna import OptunaSearch


class BestEpochOptunaSearch(OptunaSearch):
    def _seen(self) -> dict[str, tuple[float | None, int]]:
        """trial id -> (best value, last step) told to Optuna. In ``__dict__``, which Ray's save/restore of the
        searcher pickles; absent in a state saved by Ray's class."""
        return self.__dict__.setdefault("_best_and_step", {})

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        super().on_trial_result(trial_id, result)  # Optuna's intermediate value at this step
        value, (best, _) = result.get(self.metric), self._seen().get(trial_id, (None, 0))
        if isinstance(value, (int, float)) and not math.isnan(value):
            if best is None or (value < best if self.mode == "min" else value > best):
                best = value
        self._seen()[trial_id] = (best, int(result.get(TRAINING_ITERATION, 0)))

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        step = (result or {}).get(TRAINING_ITERATION)
        if (not error and step is not None and self.metric in result
                and step > self._seen().get(trial_id, (None, 0))[1]):
            # the result on which the scheduler stopped a trial reaches only this hook (Tune's controller)
            self.on_trial_result(trial_id, result)
        best, _ = self._seen().pop(trial_id, (None, 0))
        if result and not error:
            if result.get("final_epoch") is False:  # cut short: no metric makes Ray's class tell Optuna PRUNED
                result = {k: v for k, v in result.items() if k != self.metric}
            elif best is not None:
                result = {**result, self.metric: best}
        super().on_trial_complete(trial_id, result, error)
