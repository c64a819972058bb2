"""The validation metrics every trial reports equal scikit-learn's definitions (they are computed with counts)."""

import numpy as np
from hypothesis import given, settings, strategies as st
from sklearn.metrics import f1_score, top_k_accuracy_score

from speciesfam.train.metrics import classification_metrics, per_class_f1


@st.composite
def predictions(draw):
    classes = draw(st.integers(2, 12))
    n = draw(st.integers(1, 60))
    seed = draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    probs = rng.random((n, classes))  # continuous: no ties, so top-5 is unambiguous
    probs /= probs.sum(axis=1, keepdims=True)
    y = rng.integers(0, draw(st.integers(1, classes)), n)  # some classes may never occur
    return probs, y, classes


@settings(max_examples=100, deadline=None)
@given(predictions())
def test_metrics_match_scikit_learn(case):
    probs, y, classes = case
    pred = probs.argmax(axis=1)
    present = np.union1d(np.unique(y), np.unique(pred))
    got = classification_metrics(probs, y, classes)
    assert abs(got["val_macro_f1"] - f1_score(y, pred, labels=present, average="macro", zero_division=0)) < 1e-12
    assert abs(got["val_accuracy"] - (pred == y).mean()) < 1e-12
    top5 = top_k_accuracy_score(y, probs, k=min(5, classes), labels=np.arange(classes)) if classes > 5 else 1.0
    assert abs(got["val_top5"] - top5) < 1e-12
    labels = [f"family {i}" for i in range(classes)]
    expected = f1_score(y, pred, labels=present, average=None, zero_division=0)
    got = per_class_f1(probs, y, labels)
    assert list(got) == [labels[i] for i in present] and np.allclose(list(got.values()), expected)
    assert abs(np.mean(list(got.values())) - classification_metrics(probs, y, classes)["val_macro_f1"]) < 1e-12


def test_a_class_neither_seen_nor_predicted_does_not_lower_macro_f1():
    probs = np.array([[0.9, 0.1, 0.0], [0.2, 0.8, 0.0]])
    assert classification_metrics(probs, np.array([0, 1]), 3)["val_macro_f1"] == 1.0
    assert classification_metrics(probs, np.array([0, 2]), 3)["val_macro_f1"] == 1 / 3  # 2 missed, 1 wrong


def test_per_class_support_is_a_count_even_when_no_prediction_is_right(tmp_path):
    """per_class.csv wrote support as 3.0 when the model got nothing right (sklearn's floats; round 51)."""
    from speciesfam.evaluate import per_class_table

    table = per_class_table(["a", "b", "c"], np.array([0, 0, 0, 1]), np.array([1, 1, 2, 0]))
    table.to_csv(tmp_path / "per_class.csv", index=False)
    assert (tmp_path / "per_class.csv").read_text().splitlines()[1:] == [
        "a,0.0,0.0,0.0,3,True", "b,0.0,0.0,0.0,1,True", "c,0.0,0.0,0.0,0,True"]
