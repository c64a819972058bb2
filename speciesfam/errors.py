"""The project's error class: a mistake a user can fix (bad config value, unknown name, missing stage output).

The CLI prints these as one line (``speciesfam STAGE: error: ...``) and exits 2; any other exception is a bug
and keeps its traceback.
"""

from __future__ import annotations


class SpeciesfamError(Exception):
    """A user-fixable problem; the message names the thing, the value, what was expected and the fix."""


class ConfigError(SpeciesfamError, ValueError):
    """A config value is invalid; the message names the field, the value and what is allowed."""


class UnknownNameError(SpeciesfamError, KeyError):
    """A registry has no entry of that name; the message lists the valid ones."""

    def __str__(self) -> str:  # KeyError would print the message quoted
        return str(self.args[0]) if self.args else ""


class SourceError(SpeciesfamError, ValueError):
    """The catalog's source (folder or manifest) cannot be read at all: missing, empty, or lacking columns."""


class StageOrderError(SpeciesfamError, FileNotFoundError):
    """A stage's input is missing or older than its own inputs; the message says which stage to run."""


class MissingPackageError(SpeciesfamError, ImportError):
    """An optional package a chosen option needs is not installed; the message says what to install."""


class SearchFailedError(SpeciesfamError, RuntimeError):
    """A search ended with no successful trial (the CLI exits non-zero)."""


def inner_error(err: BaseException) -> SpeciesfamError | None:
    """The ``SpeciesfamError`` an actor or task raised, found inside Ray's wrapping of it (Ray Data's
    SystemException, RayTaskError's cause; an ActorDiedError keeps only the text of the actor's traceback, whose
    last line names it: ``speciesfam.bundle.BundleError: ...``), or None. The driver says it in one line."""
    import re

    names: set[str] = set()
    classes: list[type] = [SpeciesfamError]
    while classes:
        c = classes.pop()
        names.add(c.__name__)
        classes += c.__subclasses__()
    said = re.compile(r"^speciesfam(?:\.\w+)*\.(\w+): (.+)$")
    seen: set[int] = set()
    todo: list[object] = [err]
    text = None
    while todo:
        e = todo.pop()
        if not isinstance(e, BaseException) or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, SpeciesfamError):
            return e
        todo += [e.__cause__, e.__context__, getattr(e, "cause", None)]
        for line in str(e).splitlines():
            m = said.match(line.strip())
            if m and m.group(1) in names:
                text = m.group(2)
    return SpeciesfamError(text) if text else None
