"""Warm start: the best trial of an earlier search (usually the cheap probe search) as the searcher's first point.

``TuneConfig.init_from = "probe"`` names an earlier experiment in the same Tune storage (a probe search is
named ``probe`` unless ``name`` says otherwise); a kind's name with no such search scored on this run's val split
takes that kind's best trial of any search on it, and the console names the trial and search taken. Only trials
scored on this run's val split count. Its best trial's head and regularisation settings become the
first configuration the searcher evaluates; only keys that the new space searches over are taken, a value
outside the new domain is clipped into it and onto its steps when quantized (or dropped for a choice that lacks it), and the space's other
parameters are sampled from their domains so the point is complete (Ray's searchers require that).
"""

from __future__ import annotations

import json
import shlex
from typing import Any

import numpy as np

from .. import console, layout, stages, storage
from ..errors import ConfigError
from .record import read_record
from .tracking import older_split_id, same_val_split, scored_trials, val_split_id

# What a probe knows that carries over to a CNN head: not lr or batch size (a CNN's are a different scale).
WARM_KEYS = ("head_units", "head_layers", "dropout", "weight_decay", "label_smoothing", "class_weighting",
             "optimizer")


def best_tune_trial(trials: list) -> Any:
    """The Tune trial with the highest val macro-F1 among those that did not fail (a trial whose loss became
    NaN after a good epoch is not "the best probe trial"); None when none scored. Ties go to the faster trial,
    as in ``tracking.rank_trials`` (the search's summary and trials.csv name that one)."""
    # a trial whose last result names another trial took that one's report (an interrupt just after a reused
    # process's previous trial: round 52), and its scores with it
    scored = [((t.metric_analysis or {}).get(layout.METRIC, {}).get("max"), t) for t in trials if t.status != "ERROR"
              and (t.last_result or {}).get("trial_id", getattr(t, "trial_id", None)) == getattr(t, "trial_id", None)]
    scored = [(value, t) for value, t in scored if isinstance(value, (int, float)) and value == value]

    def seconds(t) -> float:
        value = (t.last_result or {}).get("time_total_s")
        return float(value) if isinstance(value, (int, float)) and value == value else float("inf")

    return max(scored, key=lambda vt: (vt[0], -seconds(vt[1])))[1] if scored else None


def best_trial(workdir: str, storage_path: str, source: str) -> tuple[dict[str, Any], str]:
    """The config of the best successful trial of search ``source`` scored on this run's val split, and which
    trial that is ('trial ID of search NAME').

    Read from the search's experiment in ``storage_path``; when that is gone, from RUN/trials.csv's rows of that
    search. ``source`` naming a kind (``probe``) with no such trial of a search of that name: the best trial of
    that kind on this val split, of whichever search, said as such (any search of the kind answered for the
    name, unsaid: the warm start named 'probe' and took another search's settings; hostile tester round 39).

    Raises:
        ConfigError: when neither holds a successful trial.
    """
    from ..config import KINDS
    from .trials_file import trial_searches

    experiment = storage.join(storage_path, source)
    split = val_split_id(workdir)  # trials scored on another split (catalog or clean ran since) are not its best
    older = older_split_id(workdir, split)
    record = read_record(experiment)
    same_split = record is None or same_val_split(record.get("val_split"), split, older)
    if same_split and storage.exists(storage.join(experiment, "tuner.pkl")):
        from ray.tune import ExperimentAnalysis

        try:
            best = best_tune_trial(ExperimentAnalysis(experiment).trials)
        except (ValueError, OSError):  # a search that crashed before Tune saved its state
            best = None
        if best is not None:
            return dict(best.config), f"trial {best.trial_id} of search {source!r}"
    trials_uri = layout.path(workdir, layout.TRIALS)
    trials = storage.read_table(trials_uri) if storage.exists(trials_uri) else None
    if trials is not None and "kind" in trials.columns:
        trials = trials[[same_val_split(v, split, older) for v in trials["val_split"]]] \
            if "val_split" in trials.columns else trials
        rows = scored_trials(trials[np.array([name == source for name in trial_searches(trials)], dtype=bool)])
        if len(rows):
            return json.loads(rows.iloc[0]["config"]), f"trial {rows.iloc[0]['trial_id']} of search {source!r}"
        rows = scored_trials(trials[trials["kind"] == source]) if source in KINDS else rows
        if len(rows):
            top = rows.iloc[0]
            why = "" if record is None else "; search {!r} {}".format(
                source, "trained nothing" if same_split else "ran on an older val split (catalog or clean ran since)")
            return json.loads(top["config"]), (f"trial {top['trial_id']} of search {trial_searches(rows)[0]!r}, the "
                                               f"best {source} trial on this run's val split{why}")
    if record is not None and same_split:  # it ran here, and no trial finished: running it again is refused
        raise ConfigError(f"--init-from {source!r}: that search ran on this run's val split, but none of its trials "
                          f"finished with a val macro-F1 (see {trials_uri}); give --init-from another search, or "
                          "drop it")
    run_it = f"speciesfam tune {source}" if source in KINDS else f"speciesfam tune probe --name {shlex.quote(source)}"
    run_it = f"`{run_it} --workdir {shlex.quote(workdir)}`"
    if (source == "probe" or source not in KINDS) and stages.load(workdir, "clean") is None:  # a probe reads its
        run_it = f"`{stages.command('clean', workdir)}`, then {run_it}"  # embeddings: it failed alone (round 52)
    raise ConfigError(f"--init-from {source!r}: no finished trial scored on this run's val split found in {experiment} "
                      f"or {trials_uri}; run {run_it} first, or drop --init-from")


def fit_point(config: dict[str, Any], space: dict[str, Any], seed: int = 0,
              keys: tuple[str, ...] = WARM_KEYS) -> dict[str, Any]:
    """A complete point of ``space``: ``config``'s values for ``keys`` (fitted to each domain), the rest sampled."""
    from ray.tune.search.sample import Categorical, Domain, Float, Integer

    rng = np.random.RandomState(seed)
    point = {}
    for name, dom in space.items():
        if not isinstance(dom, Domain):
            continue  # a constant: not a searched parameter
        value = config.get(name) if name in keys else None
        if value is not None and isinstance(dom, Categorical):
            value = value if value in dom.categories else None
        elif value is not None and isinstance(dom, (Float, Integer)):
            value = fit_number(value, dom)
        point[name] = value if value is not None else dom.sample(random_state=rng)
    return point


def fit_number(value: float, dom: Any) -> int | float:
    """``value`` clipped into a numeric domain, and on its steps when quantized (``tune.qrandint(8, 64, 8)``
    draws multiples of 8 up to 64 inclusive, ``quniform(0, 0.2, 0.1)`` 0, 0.1, 0.2): a value the space can
    draw, which TPE takes as its first point (128 became 63, an exclusive bound and no step: hostile tester)."""
    from ray.tune.search.sample import Integer

    q = getattr(dom.get_sampler(), "q", None)
    upper = dom.upper - 1 if isinstance(dom, Integer) and not q else dom.upper  # randint's upper is exclusive
    value = min(max(value, dom.lower), upper)
    if q:  # Ray rounds a draw to a multiple of q: the multiple nearest the value that lies in [lower, upper]
        steps = [k * q for k in range(int(np.ceil(dom.lower / q - 1e-9)), int(np.floor(upper / q + 1e-9)) + 1)]
        value = min(steps, key=lambda v: abs(v - value)) if steps else value
        value = round(value, 12)  # 3 * 0.1 is 0.30000000000000004
    return int(round(value)) if isinstance(dom, Integer) else float(value)


def warm_start_points(workdir: str, storage_path: str, source: str, space: dict[str, Any],
                      seed: int = 0) -> list[dict[str, Any]]:
    """``[point]``: the best trial of ``source`` fitted to ``space`` (see the module docstring)."""
    best, which = best_trial(workdir, storage_path, source)
    point = fit_point(best, space, seed)
    # a key both spaces search, taken from the best trial: as it was, or clipped into this space's range
    from ray.tune.search.sample import Float, Integer

    shared = sorted(k for k in WARM_KEYS if k in point and best.get(k) is not None)
    taken = [k for k in shared if point[k] == best[k] or isinstance(space.get(k), (Float, Integer))]
    shown = lambda v: repr(float(f"{v:.4g}") if isinstance(v, float) else v)  # noqa: E731  # 0.4465, not 17 digits
    said = [f"{k}={shown(point[k])}" + ("" if point[k] == best[k] else f" (from {shown(best[k])}, fitted to this "
                                                                        "space)") for k in taken]
    # a category not in this space is drawn instead: said as such (it read "no shared keys": hostile tester)
    not_taken = [f"{k}={shown(best[k])} (drawn instead: {shown(point[k])})" for k in shared if k not in taken]
    console.say(f"tune: warm start from {source!r} ({which}): " + (", ".join(said) or "none of its settings taken") + (
        f"; not among this space's choices: {', '.join(not_taken)}" if not_taken else "")
        if shared else f"tune: warm start from {source!r} ({which}): it searched none of this space's head settings")
    return [point]
