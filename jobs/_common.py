"""Shared argument handling for the job scripts (kept out of the thin scripts themselves)."""

from __future__ import annotations

import os
import sys

# `ray job submit --working-dir .` runs jobs from the repo root; make `speciesfam` and `search_spaces`
# importable there even when the package is not pip-installed on the cluster image.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run(command: list[str], ignored: tuple[str, ...] = ()) -> None:
    """Exit with ``speciesfam COMMAND ARGS`` run on this script's arguments (``ignored`` flags dropped)."""
    from speciesfam.cli import entry
    from speciesfam.flags import OneLineParser

    OneLineParser.shown_as = os.path.basename(sys.argv[0])  # its flag errors name this script, not `speciesfam`
    args = [a for a in sys.argv[1:] if a not in ignored]
    if {"-h", "--help"} & set(args):
        print(f"{os.path.basename(sys.argv[0])}: `speciesfam {' '.join(command)}` with the flags below (the command "
              f"is fixed: leave it out){'; accepted and ignored: ' + ', '.join(ignored) if ignored else ''}\n")
    sys.exit(entry([*command, *args]))
