"""Families of random-noise images, for clean runs with the package's colour-histogram embedder (no weights)."""

from __future__ import annotations

import numpy as np
from PIL import Image

HIST = "speciesfam.data.embedders:color_histogram_embedder"


def noise_families(root, counts: dict[str, int], seed: int = 0) -> None:
    """``counts[family]`` 32 x 32 PNGs of noise in ``root/family/``."""
    rng = np.random.default_rng(seed)
    for family, n in counts.items():
        (root / family).mkdir(parents=True)
        for k in range(n):
            Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(root / family / f"{k}.png")
