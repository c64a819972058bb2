"""Shared argument handling for the job scripts (kept out of the thin scripts themselves)."""

from __future__ import annotations

import os
import sys

# `ray job submit --working-dir .` runs jobs from the repo root; make `speciesfam` and `search_spaces`
# importable there even when the package is not pip-installed on the cluster image.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run(command: list[str], ignored: tuple[str, ...] = (), ignored_values: tuple[str, ...] = ()) -> None:
    """Exit with ``speciesfam COMMAND ARGS`` run on this script's arguments (``ignored`` flags dropped, and
    ``ignored_values`` flags with their values: ``--address X`` or ``--address=X``)."""
    from speciesfam.cli import entry
    from speciesfam.flags import OneLineParser

    OneLineParser.shown_as = os.path.basename(sys.argv[0])  # its flag errors name this script, not `speciesfam`
    args, rest = [], iter(sys.argv[1:])
    for a in rest:
        if a in ignored_values:
            next(rest, None)
        elif a not in ignored and a.split("=", 1)[0] not in ignored_values:
            args.append(a)
    ignored = (*ignored, *(f"{flag} X" for flag in ignored_values))
    if {"-h", "--help"} & set(args):
        print(f"{os.path.basename(sys.argv[0])}: `speciesfam {' '.join(command)}` with the flags below (the command "
              f"is fixed: leave it out){'; accepted and ignored: ' + ', '.join(ignored) if ignored else ''}\n")
    sys.exit(entry([*command, *args]))
