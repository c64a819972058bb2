"""The search space: ``get_search_space(smoke)`` of ``--space`` (default ``search_spaces.KIND``), checked before
Ray starts, with ``--extra``'s fixed values on top.

A name must be one a trainer or model builder reads (``train.loop.DEFAULT_HP``, ``models.HEAD_DEFAULTS``,
``models.MODEL_DEFAULTS``, ``model``), or any name when a trial's model is the user's own (``module:attr``,
which may read names of its own); ``--extra`` may also fix a key of the space. A value or a range must be of the
kind its default is (number, text, bool), inside the hyperparameter's limits (``LIMITS``, ``CHOICES``), and a
range must be one that can be sampled. A CNN space chooses a ``model``; something must be left to search,
except by ``random``/``grid`` (one fixed configuration trained ``num_samples`` times). Each
refusal is one line naming the value and the fix: otherwise a typo ran every trial with the key ignored, and a
bad range or value failed every trial (or the searcher) after Ray had started, with a traceback.
"""

from __future__ import annotations

import difflib
import math
from numbers import Real
from typing import Any

from ..errors import ConfigError
from .space_module import call_space, space_module

# (lowest, highest, lowest allowed, highest allowed) of the numeric hyperparameters: what the trainers accept.
# A learning rate above 10 or a weight decay above 1 trains nothing (losses of 1e11 that still "finished": tester).
LIMITS: dict[str, tuple[float, float | None, bool, bool]] = {
    "lr": (0, 10, False, True), "weight_decay": (0, 1, True, True), "finetune_lr_factor": (0, None, False, False),
    "label_smoothing": (0, 1, True, False), "dropout": (0, 1, True, False), "augment": (0, 1, True, True),
    "lr_factor": (0, 1, False, False), "batch_size": (1, None, True, False), "head_units": (1, None, True, False),
    "head_layers": (0, None, True, False), "filters": (1, None, True, False), "depth": (1, None, True, False),
    "patience": (1, None, True, False), "lr_patience": (1, None, True, False), "unfreeze_layers": (0, None, True, False),
    "freeze_epochs": (0, None, True, False),
}
CHOICES: dict[str, tuple[str, ...]] = {"optimizer": ("adam", "adamw", "sgd"), "class_weighting": ("balanced", "none"),
                                       "pooling": ("avg", "flatten")}


# Whole numbers (layers, units, epochs, batch sizes): a trainer truncates 1.5 to 1, while the report showed 1.5.
INTEGERS = frozenset({"batch_size", "head_units", "head_layers", "filters", "depth", "patience", "lr_patience",
                      "unfreeze_layers", "freeze_epochs"})


def known_names(kind: str | None = None) -> dict[str, Any]:
    """Every hyperparameter the trainers and model builders read, with its default (``model``: None); for
    ``kind`` probe, those a probe trial reads (its head on embeddings: no CNN, no ``model``)."""
    from ..models import HEAD_DEFAULTS, MODEL_DEFAULTS
    from ..train.loop import DEFAULT_HP

    names = {**DEFAULT_HP, **HEAD_DEFAULTS, **MODEL_DEFAULTS, "model": None}
    if kind == "probe":
        from ..train.probe import READS

        return {name: names[name] for name in READS}
    return names


# other libraries' names for what the trainers read (Keras' learning_rate)
ALIASES = {"learning_rate": "lr", "learningrate": "lr", "batch": "batch_size", "units": "head_units"}


def _setting_flag(key: str) -> tuple[str, tuple[str, ...]] | None:
    """The flag of a search setting (a ``TuneConfig`` field) that ``key`` names, e.g. '--image-size 32', and
    the kinds of search that read it (``--image-size``: scratch and transfer)."""
    from ..config import KINDS, TuneConfig
    from ..flags import config_fields, flag_of

    fields = {f.name: f for f in config_fields(TuneConfig)}
    name = {"epochs": "max_epochs", "trials": "num_samples"}.get(key, key.replace("-", "_"))
    if name not in fields:
        return None
    return flag_of(fields[name]), tuple(fields[name].metadata.get("kinds", KINDS))


def _unknown(where: str, key: str, kind: str | None, known: dict[str, Any], what: str) -> ConfigError:
    """The refusal of ``key``, a name nothing in this search reads (``known``: what it reads)."""
    names = ", ".join(sorted(known))
    if kind == "probe" and key in known_names():
        return ConfigError(f"{where}: {key!r} is read only by CNN trials (tune scratch|transfer); a probe trial trains "
                           f"a head on embeddings and reads {names}")
    setting = _setting_flag(key)
    if setting and kind and kind not in setting[1]:  # it said 'give --image-size instead': a probe ignores that
        return ConfigError(f"{where}: {key!r} is a setting of `tune {'|'.join(setting[1])}` searches, which a {kind} "
                           f"search does not read; leave it out (a {kind} trial reads {names})")
    if setting:  # '--extra {"image_size": 32}' was told 'did you mean batch_size?'
        return ConfigError(f"{where}: {key!r} is a setting of the search, not a hyperparameter: give {setting[0]} "
                           "instead")
    # case first: 'Lr' is closer to 'lr' than difflib's ratio says (it found nothing)
    close = [k for k in known if k.casefold() == key.casefold()] or difflib.get_close_matches(
        ALIASES.get(key.casefold(), key), known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    own = "" if kind == "probe" else "; names of your own need your own model, 'model': 'module:attr'"
    return ConfigError(f"{where}: {key!r} is not a hyperparameter {what} read{hint} (known: {names}{own})")


def load_space(cfg) -> dict[str, Any]:
    """The checked space of ``cfg`` (a ``TuneConfig``) with ``cfg.extra`` fixed on top."""
    name = cfg.space or f"search_spaces.{cfg.kind}"
    module = space_module(name)
    space = call_space(module, name, cfg.smoke_test)
    check_space(space, name, cfg.kind, cfg.extra, cfg.searcher)
    check_extra(cfg.extra, space, call_space(module, name, not cfg.smoke_test) if cfg.extra else {}, kind=cfg.kind)
    merged = {**space, **cfg.extra}  # --extra fixes what it names, a key of the space too
    if cfg.kind != "probe" and "model" in merged:
        _check_models_fit_kind(merged["model"], cfg.kind, name)
        merged["model"] = models_that_build(merged["model"], cfg.image_size, merged.get("depth"))
    if not any(_searchable(v) for v in merged.values()) and cfg.searcher not in ("random", "grid"):
        # (tune.sample_from is drawn by Tune, not searched: a space of it alone crashed Tune with a traceback)
        raise ConfigError(f"--space {name!r}{' with --extra' if cfg.extra else ''} leaves {cfg.searcher} nothing to "
                          "search (every value is fixed or a tune.sample_from function, which no searcher models): "
                          "give at least one tune.choice/uniform/loguniform/randint range, or train the one "
                          "configuration with --searcher random --num-samples 1")
    return merged


def model_names(model: Any) -> list:
    """The models a space's ``model`` value names: a ``tune.choice``'s categories, a grid's values, or the one."""
    if isinstance(model, dict) and "grid_search" in model:
        return list(model["grid_search"])
    categories = getattr(model, "categories", None)
    return list(categories) if categories is not None else [model]


def _check_models_fit_kind(model: Any, kind: str, name: str) -> None:
    """Refuse a space whose models are all of the other CNN kind: a transfer search of scratch CNNs (recorded and
    reported as transfer learning, with no pretrained weights), or a scratch search of ImageNet backbones (their
    weights random, never said). A mix, or a model of your own (module:attr), is taken as given."""
    from ..models.transfer import BACKBONES

    names = model_names(model)
    if not all(isinstance(n, str) and ":" not in n for n in names):
        return
    backbones = [n for n in names if n in BACKBONES]
    if kind == "transfer" and not backbones:
        raise ConfigError(f"--space {name!r} chooses no ImageNet backbone ({', '.join(map(str, names))}), so a transfer "
                          f"search would train them without pretrained weights: run `speciesfam tune scratch` with "
                          f"it, or give a transfer space (backbones: {', '.join(BACKBONES)})")
    if kind == "scratch" and len(backbones) == len(names):
        raise ConfigError(f"--space {name!r} chooses only ImageNet backbones ({', '.join(backbones)}), which a scratch "
                          "search trains from random weights: run `speciesfam tune transfer` with it (--weights "
                          "imagenet, or none to train them from scratch there), or give a scratch space")


def models_that_build(model: Any, image_size: int, depth: Any = None) -> Any:
    """``model`` (a name or a ``tune.choice``) without the models that do not build at ``image_size``
    (Xception: 71 px; scratch_sequential: 2 ** its smallest ``depth``, as each block halves the image): said
    once, before any trial starts (every such trial failed, minutes later). A fixed model, or a choice left
    empty, is refused. scratch_sequential kept with depths too deep for some trials is said too."""
    from ray import tune

    from ..console import say

    grid = isinstance(model, dict) and "grid_search" in model
    names = model_names(model)
    low, high = _int_bounds(depth)
    need = _min_sizes(low)
    small = [n for n in names if isinstance(n, str) and need.get(n, 0) > image_size]
    if "scratch_sequential" in names and "scratch_sequential" not in small and 2 ** high > image_size:
        say(f"tune: scratch_sequential trials of depth above {int(math.log2(image_size))} will fail at image_size "
            f"{image_size} (each block halves the image); --image-size {2 ** high} builds every depth searched")
    if not small:
        return model
    why = "; ".join(f"{n} needs images of {need[n]} px or more" + (f" at depth {low}" if n == "scratch_sequential"
                                                                    else "") for n in small)
    fix = f"--image-size {max(need[n] for n in small)}"
    if len(small) == len(names):
        raise ConfigError(f"model: {why}, and image_size is {image_size}: give {fix} or more, or another model"
                          + (" (or a smaller depth)" if "scratch_sequential" in small else ""))
    say(f"tune: {', '.join(small)} left out of the models searched ({why}, and image_size is {image_size}; "
        f"{fix} keeps it)")
    kept = [n for n in names if n not in small]
    return tune.grid_search(kept) if grid else tune.choice(kept)


def _min_sizes(depth: int) -> dict[str, int]:
    """The smallest image each model builds at: keras backbones' own minimum, scratch_sequential's 2 ** depth
    (max pooling halves the image in each of its blocks; scratch_functional's strided blocks never reach 0)."""
    from ..models.transfer import MIN_SIZE

    return {**MIN_SIZE, "scratch_sequential": 2 ** depth}


def _int_bounds(value: Any) -> tuple[int, int]:
    """The smallest and largest ``depth`` a value or range of the space gives (the model's default if none)."""
    from ray.tune.search.sample import Categorical, Integer

    from ..models import MODEL_DEFAULTS
    from .warmstart import fit_number

    if value is None:
        value = MODEL_DEFAULTS["depth"]
    if isinstance(value, Integer):
        return fit_number(-1e9, value), fit_number(1e9, value)
    values = value.categories if isinstance(value, Categorical) else value.get("grid_search") \
        if isinstance(value, dict) else [value]
    ints = [int(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return (min(ints), max(ints)) if ints else (0, 0)


def _searchable(value: Any) -> bool:
    """A range a searcher searches: a Tune domain but a ``tune.sample_from`` function (Tune draws those)."""
    from ray.tune.search.sample import Domain, Function

    return (isinstance(value, Domain) and not isinstance(value, Function)) or \
        (isinstance(value, dict) and "grid_search" in value)


def _own_model(space: dict[str, Any], extra: dict[str, Any]) -> bool:
    """Whether a trial may build a model of the user's own (``module:attr``), which may read its own names."""
    from ray.tune.search.sample import Categorical

    model = extra.get("model", space.get("model"))
    values = model.categories if isinstance(model, Categorical) else [model]
    return any(isinstance(v, str) and ":" in v for v in values)


def check_space(space: dict[str, Any], name: str, kind: str, extra: dict[str, Any],
                searcher: str | None = None) -> None:
    """Refuse a name nothing reads, a value or range of the wrong kind or outside its limits (as the
    searcher draws it), an empty or reversed range, and a CNN space without a ``model``."""
    from ray.tune.search.sample import Categorical, Domain, Float, Integer, LogUniform

    if kind != "probe" and "model" not in space and "model" not in extra:
        raise ConfigError(f"--space {name!r} has no 'model': a {kind} space chooses the CNN each trial builds, e.g. "
                          "'model': tune.choice(['scratch_sequential']) (see search_spaces/)")
    known = known_names(kind)
    own = kind != "probe" and _own_model(space, extra)
    for key, value in space.items():
        if key not in known and not own:
            raise _unknown(f"--space {name!r}", key, kind, known, "the trainers or models")
        where = f"--space {name!r}: {key}"
        if isinstance(value, Categorical):
            if not value.categories:
                raise ConfigError(f"{where} is tune.choice([]): give at least one value")
            values = list(value.categories)
        elif isinstance(value, (Float, Integer)):
            if key in LIMITS and not (math.isfinite(value.lower) and math.isfinite(value.upper)):
                raise ConfigError(f"{where} is unbounded (tune.randn can draw any number), and {key} has limits: "
                                  "give tune.uniform(low, high) or tune.choice within them")  # said "dropout=-inf"
            if not value.lower < value.upper:
                raise ConfigError(f"{where}'s range [{value.lower}, {value.upper}] is empty or reversed: "
                                  "give lower < upper")
            q = getattr(value.get_sampler(), "q", None)
            if q and searcher == "optuna" and isinstance(getattr(value.get_sampler(), "sampler", None), LogUniform):
                # Ray's OptunaSearch drops a q-log range's quantization (head_units=36.9: every trial failed)
                raise ConfigError(f"{where} is a quantized log range (q={q:g}), which Optuna cannot sample (Ray drops "
                                  "the quantization): use tune.lograndint/loguniform without q, tune.qrandint, "
                                  "or tune.choice")
            if key in INTEGERS and isinstance(value, Float) and not (q and float(q).is_integer()
                                                                     and float(value.lower).is_integer()):
                raise ConfigError(f"{where} is a range of fractions [{value.lower}, {value.upper}]; {key} takes "
                                  "whole numbers: use tune.randint or tune.choice")
            # tune.randint/lograndint(0, 2) draw 0 or 1 (their upper bound is left out); a quantized range draws
            # multiples of q, its bounds rounded to one (quniform(0, 1, 0.5) draws 1.0)
            values = [value.lower, value.upper - 1 if isinstance(value, Integer) and not q else value.upper]
            if q:
                values = [type(v)(round(v / q) * q) for v in values]
        elif isinstance(value, dict) and "grid_search" in value:
            values = value["grid_search"]
            if not isinstance(values, (list, tuple)) or not values:  # 'adam' was read letter by letter (round 46)
                raise ConfigError(f"{where} is a grid_search of {values!r}: give tune.grid_search([value, ...]) "
                                  "with at least one value")
            if searcher not in (None, "random", "grid") and ":" not in str(searcher):
                # Ray's OptunaSearch raised ValueError after Ray started (a traceback; round 46)
                raise ConfigError(f"{where} is a tune.grid_search, which searcher {searcher!r} cannot sample: use "
                                  "tune.choice([...]) for it to choose among the values, or --searcher grid (or "
                                  "random) to run every one")
            values = list(values)
        elif isinstance(value, Domain):
            values = []
        else:
            values = [value]
        for v in values:
            _check_value(where, key, v, known.get(key), own, closed_high=not isinstance(value, Float) or bool(q))


def check_drawn(config: dict[str, Any]) -> None:
    """A trial's values as the searcher drew them, against the limits: a ``tune.sample_from`` function's values
    (or a custom searcher's) are known only once drawn, so ``check_space`` cannot see them (an lr of 1000 from one
    trained to losses of 1e11 that counted as finished; hostile tester). The trial fails, naming the value."""
    known = known_names()
    for key, value in config.items():
        if key in LIMITS or key in CHOICES:  # the default: a fix's example ('e.g. head_units=None' was no fix)
            _check_value(f"this trial's {key}", key, value, known.get(key), own=False)


def _check_value(where: str, key: str, value: Any, default: Any, own: bool, closed_high: bool = True) -> None:
    """One value (or a range's bound) of ``key`` against its default's kind and its limits."""
    if key == "model":
        if isinstance(value, str):
            from ..registry import MODELS

            # an unknown name fails here, listing the registered ones; a module:attr that does not import, or is no
            # callable (each trial failed on it after Ray started: hostile tester round 28)
            MODELS.get(value)
        return
    if key not in LIMITS and key not in CHOICES and (own or default is None):
        return
    if key == "freeze_epochs" and value is None:
        return  # None: half of max_epochs
    allowed = _kinds(default)
    if allowed and _kind(value) not in allowed:
        raise ConfigError(f"{where}={value!r} is {_kind(value)}; {key} takes {' or '.join(sorted(allowed))} "
                          f"(e.g. {key}={_example(default)!r})")
    if key in INTEGERS and isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value) \
            and not float(value).is_integer():
        raise ConfigError(f"{where}={value!r} is not a whole number; {key} takes whole numbers (e.g. "
                          f"{key}={_example(default)!r})")
    if key in CHOICES and value not in CHOICES[key]:
        raise ConfigError(f"{where}={value!r} is not one the trainers know; choose from {', '.join(CHOICES[key])}")
    if key in LIMITS and isinstance(value, Real) and not isinstance(value, bool):
        low, high, low_ok, high_ok = LIMITS[key]
        top_ok = high_ok or not closed_high  # uniform(0, 1) never draws its upper bound
        inside = math.isfinite(value) and (value >= low if low_ok else value > low) and (
            high is None or (value <= high if top_ok else value < high))
        if not inside:
            bounds = f"{'[' if low_ok else '('}{low}, {high if high is not None else 'inf'}{']' if high_ok else ')'}"
            raise ConfigError(f"{where}={value!r} is outside {bounds}, the values {key} can take")
        import numpy as np

        tiny = float(np.finfo(np.float32).tiny)  # float32's smallest normal number; below it, 0 or a subnormal
        if not low_ok and low == 0 and abs(float(np.float32(value))) < tiny:  # lr=1e-320: 8 "ok" trials, untrained
            raise ConfigError(f"{where}={value!r} is below {tiny:.1e} in float32, the precision trials train in (0 or "
                              f"a subnormal: it trains nothing), and {key} must be above 0: give at least {tiny:.1e}")


def _kinds(example: Any) -> tuple[str, ...]:
    """What kind of value a default, a constant or a search range stands for: number, bool, text."""
    from ray.tune.search.sample import Categorical, Float, Integer

    if isinstance(example, (Float, Integer)):
        return ("number",)
    if isinstance(example, Categorical):
        return tuple({k for c in example.categories for k in _kinds(c)})
    if isinstance(example, bool):
        return ("bool",)
    if isinstance(example, Real):
        return ("number",)
    if isinstance(example, str):
        return ("text",)
    return ()  # None, or something of a custom space's own: any value


def _kind(value: Any) -> str:
    return "bool" if isinstance(value, bool) else "number" if isinstance(value, Real) else \
        "text" if isinstance(value, str) else type(value).__name__


def check_extra(extra: dict[str, Any], *spaces: dict[str, Any], kind: str | None = None) -> None:
    """Refuse a fixed hyperparameter nothing reads (for a probe search: nothing a probe trial reads), or a value
    of the wrong kind or outside its limits."""
    known = known_names(kind)
    for space in spaces:
        known.update({k: v for k, v in space.items() if k not in known or known[k] is None})
    for name, value in extra.items():
        if name not in known:
            raise _unknown("extra", name, kind, known, "the trainers, models or search space")
        _check_value("extra: " + name, name, value, known[name], own=False)


def _example(default: Any) -> Any:
    from ray.tune.search.sample import Categorical, Domain

    if isinstance(default, Categorical):
        return default.categories[0]
    if isinstance(default, Domain):
        return default.lower
    return default
