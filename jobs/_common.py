"""Shared argument handling for the job scripts (kept out of the thin scripts themselves)."""

from __future__ import annotations

import os
import sys

# `ray job submit --working-dir .` runs jobs from the repo root; make `speciesfam` and `search_spaces`
# importable there even when the package is not pip-installed on the cluster image.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
