"""Name -> builder registries (models, searchers, schedulers, outlier detectors).

A registry knows which module registers its entries and imports it on first lookup, so ``import
speciesfam`` stays light while ``MODELS.get("resnet50v2")`` always finds the builders. An unknown name
fails at once with the list of valid names; registering a name twice fails too.
"""

from __future__ import annotations

import importlib
from typing import Callable, Generic, TypeVar

F = TypeVar("F", bound=Callable)


class Registry(Generic[F]):
    def __init__(self, kind: str, populated_by: tuple[str, ...]):
        self.kind = kind
        self._populated_by = populated_by
        self._entries: dict[str, F] = {}
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
        if not self._loaded:
            self._loaded = True
            for module in self._populated_by:
                importlib.import_module(module)

    def names(self) -> list[str]:
        self._load()
        return sorted(self._entries)

    def get(self, name: str) -> F:
        self._load()
        if name not in self._entries:
            raise KeyError(f"unknown {self.kind} {name!r}; valid {self.kind}s: {', '.join(self.names())}")
        return self._entries[name]

    def __contains__(self, name: str) -> bool:
        self._load()
        return name in self._entries


MODELS: Registry = Registry("model", ("speciesfam.models.scratch", "speciesfam.models.transfer"))
SEARCHERS: Registry = Registry("searcher", ("speciesfam.tune.algorithms",))
SCHEDULERS: Registry = Registry("scheduler", ("speciesfam.tune.algorithms",))
DETECTORS: Registry = Registry("detector", ("speciesfam.data.outliers",))
