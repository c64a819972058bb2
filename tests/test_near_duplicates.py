"""Near-duplicate search: the blockwise search equals the brute-force one; groups chain; one split per group."""

import numpy as np

from speciesfam.data import near_duplicates as nd


def unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_blockwise_search_equals_brute_force():
    rng = np.random.default_rng(0)
    x = unit(rng.normal(size=(300, 16)))
    x[[7, 150, 299]] = unit(x[[3, 3, 40]] + 0.01 * rng.normal(size=(3, 16)))  # copies across block borders
    for block in (7, 64, 1000):  # tiles smaller than, straddling and larger than the data
        i, j, s = nd.similar_pairs(x, 0.9, block=block)
        sim = x @ x.T
        bi, bj = np.nonzero(np.triu(sim, k=1) >= 0.9)
        assert sorted(zip(i, j)) == sorted(zip(bi, bj)), block
        np.testing.assert_allclose(s, sim[i, j], atol=1e-6)
    assert {(3, 7), (3, 150), (7, 150), (40, 299)} <= set(zip(i.tolist(), j.tolist()))


def test_groups_chain_and_rows_without_pairs_get_minus_one():
    ids = nd.group_ids(6, np.array([0, 1, 4]), np.array([1, 2, 5]))
    assert ids.tolist() == [0, 0, 0, -1, 1, 1]
    assert nd.group_ids(3, np.array([], int), np.array([], int)).tolist() == [-1, -1, -1]


def test_each_group_gets_its_majority_split_ties_to_train():
    groups = np.array([0, 0, 0, 1, 1, -1, 2, 2])
    splits = np.array(["test", "test", "train", "val", "test", "val", "val", "val"])
    assert nd.group_split(groups, splits) == {0: "test", 1: "val", 2: "val"}
    assert nd.group_split(np.array([0, 0]), np.array(["test", "train"])) == {0: "train"}


def test_dedupe_keeps_the_largest_and_drops_only_direct_copies_of_its_own_family():
    """A chain x ~ y ~ z with x and z apart dropped z as a copy of x ('cosine up to' gave y's); an original and
    its re-encoded copy under another family's label kept the copy and dropped the original (hostile tester)."""
    paths = np.array(["c", "b", "a", "x", "y", "z", "o", "m", "solo"])
    pixels = np.array([100, 400, 400, 900, 400, 100, 900, 400, 999])
    labels = np.array(["F", "F", "F", "F", "F", "F", "G", "F", "F"])
    groups = np.array([0, 0, 0, 1, 1, 1, 2, 2, -1])
    i, j = np.array([0, 0, 1, 3, 4, 6]), np.array([1, 2, 2, 4, 5, 7])
    sim = np.array([0.97, 0.96, 0.99, 0.98, 0.97, 0.995])
    got = nd.copies(groups, i, j, sim, pixels, paths, labels)
    # group 0: the most pixels, then the path: "a" stays; group 1: "z" is no copy of "x"; group 2: two families
    assert [(paths[r], paths[k], s) for r, k, s in got] == [("b", "a", 0.99), ("c", "a", 0.96), ("y", "x", 0.98)]
    # a row taken out of use before (groups -1 there) is neither kept nor dropped: "b" is chosen among the rest
    assert [(paths[r], paths[k]) for r, k, _ in nd.copies(np.where(paths == "a", -1, groups), i, j, sim, pixels,
                                                         paths, labels)] == [("c", "b"), ("y", "x")]
