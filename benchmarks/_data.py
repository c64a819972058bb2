"""Shared setup for the benchmarks: a generated collection, catalogued (and optionally cleaned) in a temp run."""

from __future__ import annotations

import os

os.environ.setdefault("RAY_AUTH_MODE", "disabled")


def prepared_run(workdir: str, per_family: int, families: int = 6, size: int = 96, clean: bool = False) -> str:
    from speciesfam.config import CleanConfig
    from speciesfam.data.catalog import run_catalog
    from speciesfam.data.clean import run_clean
    from speciesfam.data.synthetic import FAMILIES, make_collection

    images = os.path.join(workdir, "images")
    names = list(FAMILIES)[:families]
    make_collection(images, counts={n: per_family for n in names}, outliers_per_family=0, grayscale=0, extras=False,
                    size=size)
    run_catalog(images, workdir)
    if clean:
        run_clean(workdir, CleanConfig.smoke(removal="quota", contamination=0.0))
    return workdir
