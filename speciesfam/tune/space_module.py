"""Importing a ``--space`` module and calling its ``get_search_space(smoke)``: each failure one line naming the
module and the fix (a path given for a module name, an import that fails, a function of the wrong shape)."""

from __future__ import annotations

import importlib
import os
import re
from typing import Any

from ..errors import ConfigError


def _module_hint(name: str) -> str:
    """How to name a space file as a module ('my_space', not 'my_space.py' or './my_space'); a file outside the
    current folder by its name, with its folder on PYTHONPATH."""
    path = name.removesuffix(".py")
    if os.path.isabs(path) or path.startswith("../"):
        folder, module = os.path.split(os.path.normpath(path))
        hint = f"give the module's name, without .py or its folder (--space {module}, with PYTHONPATH={folder})"
    else:
        module = path.lstrip("./").replace("/", ".")
        hint = (f"give the module's name, without .py or ./ (--space {module}, with PYTHONPATH=. for a file in the "
                "current folder)")
    bad = [part for part in module.split(".") if not part.isidentifier()]  # 'my-space' imports as no module
    if bad:
        fixed = re.sub(r"\W", "_", bad[0])
        hint += f"; {bad[0]!r} is no Python module name: rename it (e.g. {'_' * fixed[:1].isdigit()}{fixed}.py)"
    return hint


def space_module(name: str):
    if name.endswith(".py") or "/" in name:
        raise ConfigError(f"--space {name!r} is a path; {_module_hint(name)}")
    try:
        module = importlib.import_module(name)
    except ImportError as err:
        raise ConfigError(f"--space {name!r}: cannot import it ({err}); give an importable module with "
                          "get_search_space(smoke: bool) (a file in the current folder: PYTHONPATH=. or pip install "
                          "your package)") from err
    except TypeError as err:  # './my_space': "the 'package' argument is required to perform a relative import"
        raise ConfigError(f"--space {name!r}: {err}; {_module_hint(name)}") from err
    except Exception as err:  # a syntax error or a failing import inside the user's module
        raise ConfigError(f"--space {name!r}: importing it failed: {type(err).__name__}: {err}") from err
    if not callable(getattr(module, "get_search_space", None)):
        raise ConfigError(f"--space {name!r} has no get_search_space(smoke: bool) function")
    return module


def call_space(module, name: str, smoke: bool) -> dict[str, Any]:
    try:
        space = module.get_search_space(smoke)
    except Exception as err:  # e.g. tune.loguniform(0, ...), or a function that takes no argument
        raise ConfigError(f"--space {name!r}: get_search_space({smoke}) raised {type(err).__name__}: {err}") from err
    if not isinstance(space, dict):
        raise ConfigError(f"--space {name!r}: get_search_space() returned a {type(space).__name__}; it must return a "
                          "dict of hyperparameter name -> value or tune.choice/uniform/...")
    return {k: _plain(v) for k, v in space.items()}


def _plain(value: Any) -> Any:
    """A space's value with numpy scalars as Python ones (np.int64(32) was written as the text "32" in trials.csv
    and the bundle's hp, and said 'head_units=np.int64(32)': hostile tester round 46): a fixed value, a
    tune.choice's values (in place), a grid's."""
    from ray.tune.search.sample import Categorical

    if hasattr(value, "item") and type(value).__module__ == "numpy":
        # a float32 as written (0.1), not as widened (0.10000000149011612): its shortest text round-trips
        return float(str(value)) if isinstance(value.item(), float) else value.item()
    if isinstance(value, Categorical):
        value.categories = [_plain(v) for v in value.categories]
    elif isinstance(value, dict) and isinstance(value.get("grid_search"), (list, tuple)):
        return {**value, "grid_search": [_plain(v) for v in value["grid_search"]]}
    return value
