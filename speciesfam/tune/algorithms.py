"""Searchers and schedulers by name (``speciesfam.registry.SEARCHERS`` / ``SCHEDULERS``).

A searcher builder is ``(space, seed, points=None) -> Searcher``; ``points`` are complete configurations to
evaluate first (a warm start, ``TuneConfig.init_from``; grid search ignores them); a scheduler builder is ``(cfg: TuneConfig) -> TrialScheduler``. Metric and mode are
given once, to ``tune.TuneConfig``.
Epochs are Tune iterations: one ``ray.train.report`` per epoch.
"""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError, MissingPackageError
from ..registry import SCHEDULERS, SEARCHERS


def _needs(package: str, searcher: str):
    raise MissingPackageError(f"searcher {searcher!r} needs the package {package!r}: pip install {package} "
                      "(or use the default searcher 'optuna')")


@SEARCHERS.register("optuna")
def optuna_tpe(space: dict[str, Any], seed: int, points: list[dict] | None = None):
    """Bayesian optimisation with Optuna's Tree-structured Parzen Estimator (handles categorical choices),
    told each trial's best epoch rather than its last (``tune.optuna_best``)."""
    import optuna

    from .optuna_best import BestEpochOptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return BestEpochOptunaSearch(sampler=optuna.samplers.TPESampler(seed=seed), points_to_evaluate=points or None)


@SEARCHERS.register("hebo")
def hebo(space: dict[str, Any], seed: int, points: list[dict] | None = None):
    try:
        import hebo as _  # noqa: F401
        from ray.tune.search.hebo import HEBOSearch
    except ImportError:
        # HEBO 0.3.6 (the latest) requires numpy<1.25, which this stack (numpy 2) cannot install beside it.
        raise MissingPackageError("searcher 'hebo' needs the package HEBO, whose latest release (0.3.6) requires "
                                  "numpy<1.25, which this stack (numpy 2) cannot install beside it; use 'optuna' "
                                  "(the default) or 'bayesopt'") from None
    return HEBOSearch(random_state_seed=seed, points_to_evaluate=points or None)


@SEARCHERS.register("bayesopt")
def bayesopt(space: dict[str, Any], seed: int, points: list[dict] | None = None):
    """Gaussian-process BayesOpt: continuous parameters only (tune.uniform/loguniform) beside fixed values, so
    choices, integer ranges, quantized ranges and grid searches are refused up front (Ray's BayesOptSearch failed on an Integer with a
    traceback, and ignores q: head_units=42.3 failed every trial)."""
    from ray.tune.search.sample import Categorical, Domain, Float, Integer

    for name, dom in space.items():
        quantized = isinstance(dom, Domain) and getattr(dom.get_sampler(), "q", None)
        grid = isinstance(dom, dict) and "grid_search" in dom
        if (isinstance(dom, Domain) and not isinstance(dom, Float)) or quantized or grid:
            what = ("a quantized range" if quantized else "a grid_search" if grid else "a choice (tune.choice)"
                    if isinstance(dom, Categorical) else "an integer range (tune.randint)"
                    if isinstance(dom, Integer) else f"a {type(dom).__name__}")
            raise ConfigError(f"searcher 'bayesopt' handles only continuous parameters (tune.uniform/loguniform) "
                              f"beside fixed values, but {name!r} is {what}: fix it in the space or use --searcher "
                              "optuna (TPE)")
    try:
        import bayes_opt
        from ray.tune.search.bayesopt import BayesOptSearch
    except ImportError:
        _needs("bayesian-optimization<2", "bayesopt")
    if not hasattr(bayes_opt, "UtilityFunction"):  # Ray's BayesOptSearch uses the 1.x API
        raise MissingPackageError(f"searcher 'bayesopt' needs bayesian-optimization<2 (Ray's integration uses its 1.x API), "
                          f"found {getattr(bayes_opt, '__version__', '?')}: pip install 'bayesian-optimization<2'")
    return BayesOptSearch(random_state=seed, points_to_evaluate=points or None)


@SEARCHERS.register("random")
def random_search(space: dict[str, Any], seed: int, points: list[dict] | None = None):
    """Tune's own random sampling of the space, seeded (Tune's default generator was not: the same command
    drew other configurations each time)."""
    from ray.tune.search.basic_variant import BasicVariantGenerator

    return BasicVariantGenerator(points_to_evaluate=points or None, random_state=seed)


@SEARCHERS.register("grid")
def grid_search(space: dict[str, Any], seed: int, points: list[dict] | None = None):
    """Every combination of ``tune.grid_search`` values (num_samples repeats the grid); other keys of the space
    drawn at random, seeded."""
    from ray.tune.search.basic_variant import BasicVariantGenerator

    return BasicVariantGenerator(random_state=seed)


@SCHEDULERS.register("asha")
def asha(cfg):
    """Asynchronous successive halving: stop trials in the bottom 1/reduction_factor at each rung. A trial
    first at a rung (nothing to compare with) is judged again once another trial gets there (``tune.asha``)."""
    from .asha import RecheckedASHA

    return RecheckedASHA(max_t=cfg.max_epochs, grace_period=cfg.grace,
                         reduction_factor=cfg.reduction_factor, seed=cfg.seed)


@SCHEDULERS.register("hyperband")
def hyperband(cfg):
    """Asynchronous HyperBand: ASHA over up to 3 brackets of growing grace periods (grace_period x
    reduction_factor**s), each trial in one bracket, so a slow starter gets more epochs before it is judged.

    Not Ray's synchronous ``HyperBandScheduler``: it pauses trials at each milestone and, with a concurrency
    limit or trials that report faster than it decides, can leave paused trials waiting forever (measured
    here: 2 of 6 toy searches under CPU load hung; ray-project/ray#6780, #37605). Trials here are never paused.
    """
    from .asha import RecheckedASHA

    # bracket s first judges a trial at grace_period * rf**s epochs, which must stay within max_epochs
    highest = RecheckedASHA.highest_rung(cfg.max_epochs, cfg.grace, cfg.reduction_factor)
    return RecheckedASHA(max_t=cfg.max_epochs, grace_period=cfg.grace,
                         reduction_factor=cfg.reduction_factor, brackets=min(3, highest + 1), seed=cfg.seed)


@SCHEDULERS.register("fifo")
def fifo(cfg):
    """No early stopping: every trial runs to max_epochs (or its own early stopping)."""
    from .asha import SavedFIFO

    return SavedFIFO()
