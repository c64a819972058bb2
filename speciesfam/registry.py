"""Name -> builder registries (models, searchers, schedulers, outlier detectors).

A registry knows which modules register its built-in entries and imports them on first lookup, so
``import speciesfam`` stays light while ``MODELS.get("resnet50v2")`` always finds the builders.

Plug-ins need no edit of this package (the model is timm's registry: names, lookup, discovery):

- ``REGISTRY.get("my_pkg.backbones:build_tiny")`` imports ``my_pkg.backbones`` and returns its attribute, so any
  flag or search-space value that names an entry also accepts ``module:attr``;
- installed packages can declare entries under the entry-point group ``speciesfam.<kind>s`` (e.g.
  ``[project.entry-points."speciesfam.models"] tiny = "my_pkg.backbones:build_tiny"``); they are listed by
  ``names()`` and found by ``get("tiny")``.

An unknown name fails at once with the list of valid names; registering a name twice fails too.
"""

from __future__ import annotations

import fnmatch
import importlib
from typing import Callable, Generic, TypeVar

from .errors import ConfigError, UnknownNameError

F = TypeVar("F", bound=Callable)


def load_attr(spec: str, kind: str) -> Callable:
    """Import ``module:attr`` and return the attribute (a callable), or fail naming the spec and the fix."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"{kind} {spec!r}: a plug-in is written 'module:attr' (e.g. my_pkg.models:build)")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ConfigError(f"{kind} {spec!r}: cannot import module {module_name!r} ({err}); is it installed or on "
                          "PYTHONPATH?") from err
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"{kind} {spec!r}: module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        name = type(obj).__name__
        raise ConfigError(f"{kind} {spec!r} is {'an' if name[0] in 'aeiou' else 'a'} {name}, not a callable")
    return obj


class Registry(Generic[F]):
    def __init__(self, kind: str, populated_by: tuple[str, ...]):
        self.kind = kind
        self._populated_by = populated_by
        self._entries: dict[str, F] = {}
        self._entry_points: dict[str, str] = {}
        self._loaded = False

    def register(self, name: str) -> Callable[[F], F]:
        """Decorator: ``@REGISTRY.register("name")``."""

        def add(fn: F) -> F:
            if name in self._entries:
                raise KeyError(f"{self.kind} {name!r} is already registered (by {self._entries[name].__module__})")
            self._entries[name] = fn
            return fn

        return add

    def _load(self) -> None:
        """Import the built-in modules and read entry points once; marked loaded only after all succeeded, so a
        failed import is raised again on the next lookup instead of leaving a half-filled registry."""
        if self._loaded:
            return
        for module in self._populated_by:
            importlib.import_module(module)
        from importlib.metadata import entry_points

        for ep in entry_points(group=f"speciesfam.{self.kind}s"):
            self._entry_points.setdefault(ep.name, ep.value)
        self._loaded = True

    def names(self, pattern: str | None = None) -> list[str]:
        """Registered names (built-ins and installed plug-ins), optionally filtered by a glob ``pattern``."""
        self._load()
        names = sorted({*self._entries, *self._entry_points})
        return [n for n in names if pattern is None or fnmatch.fnmatch(n, pattern)]

    def get(self, name: str) -> F:
        """The entry called ``name``, or the attribute ``module:attr`` names."""
        self._load()
        if name in self._entries:
            return self._entries[name]
        if name in self._entry_points:
            return load_attr(self._entry_points[name], self.kind)  # type: ignore[return-value]
        if ":" in name:
            return load_attr(name, self.kind)  # type: ignore[return-value]
        raise UnknownNameError(f"unknown {self.kind} {name!r}; valid {self.kind}s: {', '.join(self.names())} "
                               f"(or your own as module:attr)")

    def __contains__(self, name: str) -> bool:
        self._load()
        return name in self._entries or name in self._entry_points


MODELS: Registry = Registry("model", ("speciesfam.models.scratch", "speciesfam.models.transfer"))
SEARCHERS: Registry = Registry("searcher", ("speciesfam.tune.algorithms",))
SCHEDULERS: Registry = Registry("scheduler", ("speciesfam.tune.algorithms",))
DETECTORS: Registry = Registry("detector", ("speciesfam.data.outliers",))
