"""Command-line flags generated from the config dataclasses (``speciesfam.config``), for the CLI and the jobs.

Every field becomes ``--field-name`` (help and default from the field, choices from the registries); flags a
user does not give are left out of the namespace, so ``config_from_args`` overlays only what was given on a
base config (``TuneConfig()`` or ``TuneConfig.smoke()``), and the dataclass stays the one source of defaults.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import types
import typing
from typing import Any, TypeVar

from .errors import ConfigError

T = TypeVar("T")
_NONE = ("none", "null")


def _unwrap(tp: Any) -> tuple[Any, bool]:
    """(base type, optional?) of an annotation such as ``str | None``."""
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0], True
    return tp, False


def _no_repeated_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    twice = sorted({k for k in keys if keys.count(k) > 1})
    if twice:
        raise ValueError(f"{', '.join(map(repr, twice))} given more than once; keep one")
    return dict(pairs)


def converter(name: str, base: Any, optional: bool):
    def convert(text: str):
        if optional and text.strip().lower() in _NONE:
            return None
        try:
            if base is dict:  # a key given twice: refused (json keeps the last, unsaid)
                value = json.loads(text, object_pairs_hook=_no_repeated_keys)
                if not isinstance(value, dict):
                    raise ValueError(f"it is a {type(value).__name__}; an object looks like '{{\"dropout\": 0.3}}'")
                return value
            value = base(text)
            if base is float and not math.isfinite(value) and not any(w in text.lower() for w in ("inf", "nan")):
                raise ValueError("too large: it reads as infinity")  # '1e400' was said as 'inf' in the refusal
            return value
        except ValueError as err:
            what = {int: "an integer", float: "a number", dict: "a JSON object"}.get(base, base.__name__)
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}{' or none' if optional else ''} ({err})")

    convert.__name__ = name  # argparse names the type in its error message
    return convert


def _choices_text(choices: Any) -> str:
    if isinstance(choices, str):  # a registry: list its names (cheap: registries import no framework)
        from . import registry

        return ", ".join(getattr(registry, choices).names())
    return ", ".join(map(str, choices))


def config_fields(cls: type) -> list[dataclasses.Field]:
    """The fields of ``cls`` that are flags."""
    return [f for f in dataclasses.fields(cls) if f.metadata.get("cli", True)]


def flag_of(f: dataclasses.Field, value: Any = None) -> str:
    """The flag a user types for field ``f`` (``--no-...`` for a boolean set to False)."""
    flag = f.metadata.get("flag", "--" + f.name.replace("_", "-"))
    return "--no-" + flag[2:] if value is False else flag


class OneLineParser(argparse.ArgumentParser):
    """A bad flag or value is one line on stderr, exit status 2 (argparse printed the whole usage block first)."""

    shown_as: str | None = None  # the name the user typed, where it is not ``speciesfam COMMAND`` (a job script)

    def error(self, message: str):  # type: ignore[override]
        prog = OneLineParser.shown_as or self.prog
        self.exit(2, f"{prog}: error: {message} (see {prog} --help)\n")

    def format_help(self) -> str:
        if not OneLineParser.shown_as:
            return super().format_help()
        # a job script: its own name, and the command words it fixes (``tune``'s kind) left out of the usage
        fixed = [a for a in self._actions if not a.option_strings]
        saved = self.prog, [a.help for a in fixed]
        self.prog = OneLineParser.shown_as
        for a in fixed:
            a.help = argparse.SUPPRESS
        try:
            return super().format_help()
        finally:
            self.prog = saved[0]
            for a, text in zip(fixed, saved[1]):
                a.help = text


def add_config_flags(parser: argparse.ArgumentParser, *classes: type, title: str | None = None) -> None:
    """Add a flag per field of each config class (a name shared by two classes becomes one flag for both)."""
    group = parser.add_argument_group(title) if title else parser
    seen: set[str] = set()
    for cls in classes:
        hints = typing.get_type_hints(cls)
        for f in config_fields(cls):
            if f.name in seen:
                continue
            seen.add(f.name)
            flag = flag_of(f)
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            help_text = f.metadata.get("help", "")
            if "choices" in f.metadata:
                help_text += f"; one of: {_choices_text(f.metadata['choices'])}"
            if not (default is None and "default" in help_text):  # a None default its help explains already
                help_text += f" (default: {json.dumps(default) if isinstance(default, dict) else default})"
            help_text = help_text.replace("%", "%%")
            base, optional = _unwrap(hints[f.name])
            if base is bool:
                group.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction,
                                   default=argparse.SUPPRESS, help=help_text)
            else:
                group.add_argument(flag, dest=f.name, type=converter(f.name, base, optional),
                                   default=argparse.SUPPRESS, metavar=f.name.upper(), help=help_text)


def config_from_args(cls: type[T], args: argparse.Namespace, base: T | None = None, **fixed: Any) -> T:
    """``base`` (default ``cls()``) with the flags the user gave and ``fixed`` values, validated."""
    given = {f.name: getattr(args, f.name) for f in config_fields(cls) if hasattr(args, f.name)}
    try:
        cfg = dataclasses.replace(base if base is not None else cls(), **{**given, **fixed})
    except TypeError as err:  # a field that is not in cls
        raise ConfigError(f"{cls.__name__}: {err}") from err
    try:
        cfg.validate()  # type: ignore[attr-defined]
    except ConfigError as err:  # 'time_budget_s=0.0 is invalid' -> '--time-budget 0.0 is invalid': what was typed
        f = next((f for f in config_fields(cls) if f.name == getattr(err, "field", None)), None)
        if f is None:
            raise
        value = "none" if err.value is None else repr(err.value) if isinstance(err.value, str) else err.value
        raise ConfigError(f"{flag_of(f, err.value)} {value} {err.detail}") from None
    return cfg
