"""The report's and evaluate's plots at the reference collection's size (202 families): images a page can show."""

from __future__ import annotations

import numpy as np
import pandas as pd


def test_a_confusion_matrix_of_the_reference_size_stays_a_page_sized_image():
    """202 families (the reference collection) drew a 7,070 px square (5 s, in every report and evaluation) whose
    cells carry no labels past 40 families: the image stays 1,400 px, each family still its own cells; the class
    distribution likewise."""
    import io

    from PIL import Image

    from speciesfam import plots

    n = 202
    png = plots.confusion(np.eye(n, dtype=int) * 5 + 1, [f"Family{i:03d}" for i in range(n)])
    assert max(Image.open(io.BytesIO(png)).size) <= 1500
    # the class distribution: 6060 x 400 px, 45 px tall on the page (round 62)
    counts = pd.Series(np.arange(n) + 29, index=[f"Family{i:03d}" for i in range(n)])
    width, height = Image.open(io.BytesIO(plots.class_counts(counts, counts - 1))).size
    assert width <= 1800 and width / height <= 5
