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


def test_the_most_confused_matrix_keeps_each_rows_errors_outside_it(tmp_path, monkeypatch):
    """Of 12 families, the 10 most confused are drawn: a family whose errors went to a family not drawn showed a
    blank row, its share of errors unseen (round 62); they are a last column, and the pairs are listed."""
    from speciesfam import plots
    from speciesfam.report import _evaluation

    fams = [f"F{i:02d}" for i in range(12)]
    evaluation = tmp_path / "eval_test"
    evaluation.mkdir()
    pd.DataFrame({"family": fams, "precision": 0.5, "recall": 0.0, "f1": 0.0, "support": 5}).to_csv(
        evaluation / "per_class.csv", index=False)
    pairs = [(f"F{i:02d}", f"F{i + 1:02d}", 5) for i in range(0, 10, 2)] + [("F00", "F11", 2)]
    pd.DataFrame(pairs, columns=["true", "predicted", "count"]).to_csv(evaluation / "confused_pairs.csv", index=False)
    (evaluation / "metrics.json").write_text('{"test_macro_f1": 0.0}')
    drawn = {}
    real = plots.confusion
    monkeypatch.setattr(plots, "confusion", lambda cm, labels, **kw: drawn.update(cm=cm, labels=labels, **kw) or
                        real(cm, labels, **kw))
    section = _evaluation(str(tmp_path), None)
    assert "F11" not in drawn["labels"] and len(drawn["labels"]) == 10
    assert drawn["other"][drawn["labels"].index("F00")] == 2 and drawn["other"].sum() == 2
    assert section["pairs"][0] == {"true": "F00", "predicted": "F01", "count": 5} and len(section["pairs"]) == 6


def test_a_family_name_the_plot_font_cannot_draw_is_escaped_not_boxes():
    """CJK family names were drawn as empty boxes (DejaVu Sans has no CJK glyphs): two such families looked the
    same on the plots (round 67). Characters the font lacks are drawn as their escapes; others as they are."""
    from speciesfam import plots

    assert plots._tick("\u718a\u79d1") == "\\u718a\\u79d1" != plots._tick("\u732b\u79d1")
    latin_greek_cyrillic = "Ursid\u00e9 \u0395\u03bb \u043a\u043e\u0442"
    assert plots._tick(latin_greek_cyrillic + " a\tb") == latin_greek_cyrillic + " a\\tb"
    assert plots._tick("\U0001f43b bears") == "\\U0001f43b bears"
