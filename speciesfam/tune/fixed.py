"""``--extra``: hyperparameters fixed for every trial, checked before Ray starts.

A name must be one a trainer or a model builder reads (``train.loop.DEFAULT_HP``, ``models.HEAD_DEFAULTS``,
``models.MODEL_DEFAULTS``, ``model``) or a key of the search space (a custom space may add names its custom
model reads); a typo would otherwise be carried through every trial and change nothing. A value must be of
the kind its default or its range in the space has (a number for ``lr``, text for ``optimizer``, ...).
"""

from __future__ import annotations

import difflib
from numbers import Real
from typing import Any

from ..errors import ConfigError


def known_names() -> dict[str, Any]:
    """Every hyperparameter the trainers and model builders read, with its default (``model``: None)."""
    from ..models import HEAD_DEFAULTS, MODEL_DEFAULTS
    from ..train.loop import DEFAULT_HP

    return {**DEFAULT_HP, **HEAD_DEFAULTS, **MODEL_DEFAULTS, "model": None}


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


def check_extra(extra: dict[str, Any], *spaces: dict[str, Any]) -> None:
    """Refuse a fixed hyperparameter nothing reads, or a value of the wrong kind, naming it and the fix."""
    known = known_names()
    for space in spaces:
        known.update({k: v for k, v in space.items() if k not in known or known[k] is None})
    for name, value in extra.items():
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(f"extra: {name!r} is not a hyperparameter the trainers, models or search space read; "
                              f"{hint}known: {', '.join(sorted(known))}")
        if name == "model" and isinstance(value, str):
            from ..registry import MODELS

            MODELS.get(value)  # an unknown name fails here, listing the registered ones
        allowed = _kinds(known[name])
        if name == "freeze_epochs" and value is None:
            continue  # None: half of max_epochs
        if allowed and _kind(value) not in allowed:
            raise ConfigError(f"extra: {name}={value!r} is {_kind(value)}; {name} takes {' or '.join(sorted(allowed))} "
                              f"(e.g. {name}={_example(known[name])!r})")


def _example(default: Any) -> Any:
    from ray.tune.search.sample import Categorical, Domain

    if isinstance(default, Categorical):
        return default.categories[0]
    if isinstance(default, Domain):
        return default.lower
    return default
