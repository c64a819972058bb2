"""Asynchronous successive halving in which a promotion made with nothing to compare against is provisional.

Ray's ``AsyncHyperBandScheduler`` (ASHA, Li et al. 2020) decides at a rung against the results already
recorded there. The first trial to reach a rung has none, so it always continues; the first trial of a search
is first at every rung and always trains to ``max_t``, however poor it is, holding one of the search's slots
(measured in benchmarks/RESULTS.md, "ASHA vs FIFO": 30 epochs at val macro-F1 0.39 on one of two slots, which
delayed every later trial). Here such a promotion is checked again at the trial's next report once another
trial has reached that rung: it continues only if it is not below the rung's cutoff then (with one other
result: if it is not the worse of the two, the comparison that other trial faced). Everything else is
Ray's ASHA: the same rungs (``grace_period * reduction_factor**k`` below ``max_t``), the same cutoff (the
``1 - 1/reduction_factor`` quantile of the rung's results), brackets chosen with the same softmax weights
(seeded here), a trial stopped at ``max_t``.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

logger = logging.getLogger(__name__)


class SavedFIFO(FIFOScheduler):
    """Ray's FIFO scheduler that has Tune save the search's state as soon as a trial has finished.

    Tune saves it (trial statuses, the searcher) every 10 s or more, and when a trial has checkpointed twice
    since. A driver killed without warning (SIGKILL, a lost node) in between lost the trials that finished
    there: ``--resume`` took them for running and trained them again from their last checkpoint (a probe
    trial's best epoch), so a finished trial's score changed (hostile tester: 0.667 after 11 epochs became
    0.822). A trial's completion reaches the scheduler with the controller itself, before Tune marks it
    finished; the save is made at the next step, when the scheduler is next asked which trial to run. A
    scheduler of your own (``--scheduler module:attr``) keeps Tune's own saves.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._controller: Any = None
        self._save_due = False

    def on_trial_complete(self, tune_controller, trial, result: dict[str, Any]) -> None:
        super().on_trial_complete(tune_controller, trial, result)
        self._after_trial_end(tune_controller)

    def on_trial_error(self, tune_controller, trial) -> None:
        super().on_trial_error(tune_controller, trial)
        self._after_trial_end(tune_controller)

    def _after_trial_end(self, tune_controller) -> None:
        if callable(getattr(tune_controller, "checkpoint", None)):  # the controller, not the wrapper later calls get
            self._controller, self._save_due = tune_controller, True

    def choose_trial_to_run(self, tune_controller):
        if self._save_due:
            self._save_due = False
            try:
                self._controller.checkpoint(force=True)
            except Exception as err:  # noqa: BLE001 -- Tune's next periodic save tries again
                logger.warning("tune: saving the search's state after a trial ended failed: %s", err)
        return super().choose_trial_to_run(tune_controller)

    def __getstate__(self) -> dict[str, Any]:  # never the controller (the Tuner pickles its scheduler)
        return {**self.__dict__, "_controller": None, "_save_due": False}


class RecheckedASHA(SavedFIFO):
    """ASHA (``brackets=1``) or asynchronous HyperBand (``brackets>1``) over ``time_attr``; see the module text."""

    def __init__(self, max_t: int, grace_period: int, reduction_factor: float, brackets: int = 1,
                 time_attr: str = "epoch", seed: int | None = None):
        if not (0 < grace_period <= max_t and reduction_factor > 1 and brackets > 0):
            raise ValueError(f"ASHA needs 0 < grace_period <= max_t, reduction_factor > 1 and brackets > 0; got "
                             f"grace_period={grace_period}, max_t={max_t}, reduction_factor={reduction_factor}, "
                             f"brackets={brackets}")
        super().__init__()
        self._max_t, self._rf, self._time_attr = max_t, reduction_factor, time_attr
        rungs = self.highest_rung(max_t, grace_period, reduction_factor)
        # per bracket: {milestone: {trial_id: value}}, milestones grace * rf**(k + s) for k = 0 .. rungs - s
        self._brackets = [{grace_period * reduction_factor ** (k + s): {} for k in range(rungs - s + 1)}
                          for s in range(brackets)]
        self._bracket_of: dict[str, dict] = {}
        self._provisional: dict[str, set] = {}  # trial id -> milestones it passed with nothing recorded there
        self._rng = np.random.default_rng(seed)
        self._sign = 1.0
        self.num_stopped = 0

    @staticmethod
    def highest_rung(max_t: int, grace_period: int, reduction_factor: float) -> int:
        """The largest k with ``grace_period * reduction_factor**k <= max_t`` (Ray's rung count, less 1): the
        rungs are k = 0 .. highest, and a bracket s (first judged at grace * rf**s) exists for s <= highest."""
        return int(math.log(max_t / grace_period) / math.log(reduction_factor) + 1e-9)

    @property
    def milestones(self) -> list[list[float]]:
        """Each bracket's rungs (epochs at which trials are judged), ascending."""
        return [sorted(rungs) for rungs in self._brackets]

    def set_search_properties(self, metric: str | None, mode: str | None, **spec) -> bool:
        if (self._metric and metric) or mode not in (None, "max", "min"):
            return False
        self._metric = metric or self._metric
        self._sign = -1.0 if mode == "min" else 1.0
        return True

    def on_trial_add(self, tune_controller, trial) -> None:
        self._assign(trial.trial_id)

    def _assign(self, trial_id: str) -> None:
        sizes = np.array([len(b) for b in self._brackets], dtype=float)
        weights = np.exp(sizes - sizes.max())
        self._bracket_of[trial_id] = self._brackets[self._rng.choice(len(sizes), p=weights / weights.sum())]
        self._provisional[trial_id] = set()

    def _record(self, trial_id: str, t: float, value: float) -> bool:
        """Record ``value`` at the highest rung at or below ``t`` this trial has not reached yet; True: stop it."""
        if trial_id not in self._bracket_of:  # a trial Tune restored without adding it here
            self._assign(trial_id)
        rungs = self._bracket_of[trial_id]
        for milestone in sorted(rungs, reverse=True):
            recorded = rungs[milestone]
            if t < milestone or trial_id in recorded:
                continue
            stop = bool(recorded) and value < self._cutoff(recorded)
            if not recorded:
                self._provisional[trial_id].add(milestone)
            recorded[trial_id] = value
            return stop
        return False

    def _cutoff(self, recorded: dict[str, float]) -> float:
        """The ``1 - 1/reduction_factor`` quantile of the rung's results (NaN ones left out, as Ray does)."""
        values = [v for v in recorded.values() if not np.isnan(v)]
        return float(np.percentile(values, (1 - 1 / self._rf) * 100)) if values else -np.inf

    def _fails_recheck(self, trial_id: str) -> bool:
        """A provisional promotion, now that other trials reached its rung: below the cutoff means stop."""
        rungs = self._bracket_of[trial_id]
        for milestone in sorted(self._provisional[trial_id]):
            recorded = rungs[milestone]
            if len(recorded) < 2:
                continue
            self._provisional[trial_id].discard(milestone)
            if recorded[trial_id] < self._cutoff(recorded):
                return True
        return False

    def _time(self, result: dict[str, Any]) -> Any:
        """The trial's epoch (``time_attr``), else Tune's iteration count: Tune restarts the latter at 1 for a
        resumed CNN trial, whose epochs go on from its checkpoint (its rungs were judged on restarted counts)."""
        return result.get(self._time_attr, result.get("training_iteration"))

    def on_trial_result(self, tune_controller, trial, result: dict[str, Any]) -> str:
        if self._time(result) is None or self._metric not in result:
            return TrialScheduler.CONTINUE
        t, value = self._time(result), self._sign * float(result[self._metric])
        stop = t >= self._max_t or self._record(trial.trial_id, t, value) or self._fails_recheck(trial.trial_id)
        self.num_stopped += stop
        return TrialScheduler.STOP if stop else TrialScheduler.CONTINUE

    def on_trial_complete(self, tune_controller, trial, result: dict[str, Any]) -> None:
        if result and self._time(result) is not None and self._metric in result and trial.trial_id in self._bracket_of:
            self._record(trial.trial_id, self._time(result), self._sign * float(result[self._metric]))
        self.on_trial_remove(tune_controller, trial)
        super().on_trial_complete(tune_controller, trial, result)  # the state saved

    def on_trial_remove(self, tune_controller, trial) -> None:
        self._bracket_of.pop(trial.trial_id, None)
        self._provisional.pop(trial.trial_id, None)

    def on_trial_error(self, tune_controller, trial) -> None:
        self.on_trial_remove(tune_controller, trial)
        super().on_trial_error(tune_controller, trial)

    def debug_string(self) -> str:
        return f"Using ASHA with re-checked first promotions: {self.num_stopped} trials stopped"
