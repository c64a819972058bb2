"""Optuna TPE told each trial's best epoch, the value a trial is ranked and shipped by.

Ray's ``OptunaSearch`` completes an Optuna trial with the trial's last reported value. A speciesfam trial is
worth its best epoch (``trials.csv`` ranks by ``best_val_macro_f1``; export ships the best checkpoint), and its
last epoch is lower whenever its own early stopping waited out its patience. Under ASHA the difference is
larger: a trial cut at a rung is reported at that rung. TPE then modelled configurations by values that were
not their results. Here the completed trial's value is the best of its reports (per-epoch values still reach
Optuna as intermediate values, as in Ray's); failed trials stay failed.
"""

from __future__ import annotations

import math

from ray.tune.search.optuna import OptunaSearch


class BestEpochOptunaSearch(OptunaSearch):
    def _bests(self) -> dict[str, float]:
        # in __dict__, which Ray's save/restore of the searcher pickles; absent in a state saved by Ray's class
        return self.__dict__.setdefault("_best_by_trial", {})

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        super().on_trial_result(trial_id, result)
        value, bests = result.get(self.metric), self._bests()
        if isinstance(value, (int, float)) and not math.isnan(value):
            old = bests.get(trial_id)
            if old is None or (value < old if self.mode == "min" else value > old):
                bests[trial_id] = value

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        best = self._bests().pop(trial_id, None)
        if result and not error and best is not None:
            result = {**result, self.metric: best}
        super().on_trial_complete(trial_id, result, error)
