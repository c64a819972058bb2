"""Near-duplicates: images whose embeddings are nearly identical (re-encoded, resized, cropped copies).

Pairs come from an exact blockwise cosine search: tiles of ``block x block`` dot products of L2-normalised
embeddings, so memory stays at one tile (``block**2`` float32: 16 MiB for 2048) whatever the collection size,
and the work is plain matrix products (BLAS on CPU). Cost grows with n^2: benchmarks/clean_quality.py measures
it and extrapolates to 100k and 1M embeddings. Pairs are joined into groups (connected components), and each
group is then kept inside one split, so a copy in train never inflates a test score.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

PAIR_COLUMNS = ["path_a", "path_b", "family_a", "family_b", "similarity", "group"]
SPLIT_ORDER = ("train", "val", "test")


def similar_pairs(x: np.ndarray, threshold: float, block: int = 2048) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs (i < j) with cosine similarity >= ``threshold`` of the rows of ``x`` (L2-normalised).

    Returns index arrays ``i``, ``j`` and the similarities, sorted by ``(i, j)``."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    n = len(x)
    out_i, out_j, out_s = [], [], []
    for a in range(0, n, block):
        xa = x[a:a + block]
        for b in range(a, n, block):
            sim = xa @ x[b:b + block].T
            if a == b:  # the diagonal tile: keep j > i only
                sim = np.triu(sim, k=1) + np.tril(np.full_like(sim, -2.0))
            ii, jj = np.nonzero(sim >= threshold)
            out_i.append(ii + a)
            out_j.append(jj + b)
            out_s.append(sim[ii, jj])
    if not out_i:
        return np.zeros(0, int), np.zeros(0, int), np.zeros(0, np.float32)
    i, j, s = np.concatenate(out_i), np.concatenate(out_j), np.concatenate(out_s)
    order = np.lexsort((j, i))
    return i[order], j[order], s[order]


def group_ids(n: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Group id per row: rows joined by a chain of pairs share one; a row in no pair gets -1."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if len(i) == 0:
        return np.full(n, -1)
    graph = coo_matrix((np.ones(len(i)), (i, j)), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    in_pair = np.zeros(n, dtype=bool)
    in_pair[i] = in_pair[j] = True
    # Renumber the groups 0.. in order of their first row, so ids are stable for the same input.
    ids = np.full(n, -1)
    first = {}
    for row in np.flatnonzero(in_pair):
        ids[row] = first.setdefault(comp[row], len(first))
    return ids


def _members(groups: np.ndarray):
    """(group, its row indices in ascending order) for every group >= 0, by one sort (not a scan per group)."""
    rows = np.flatnonzero(groups >= 0)
    rows = rows[np.argsort(groups[rows], kind="stable")]
    ids = groups[rows]
    if not len(ids):
        return iter(())
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    return zip(ids[starts].tolist(), np.split(rows, starts[1:]))


def group_split(groups: np.ndarray, splits: np.ndarray) -> dict[int, str]:
    """The one split for each group: its most common split (ties: train before val before test, so a tie
    never shrinks the training set)."""
    out = {}
    for g, rows in _members(groups):
        members = splits[rows]
        counts = {s: int((members == s).sum()) for s in SPLIT_ORDER}
        out[int(g)] = max(SPLIT_ORDER, key=lambda s: (counts[s], -SPLIT_ORDER.index(s)))
    return out


def copies(groups: np.ndarray, i: np.ndarray, j: np.ndarray, sim: np.ndarray, pixels: np.ndarray,
           paths: np.ndarray, labels: np.ndarray) -> list[tuple[int, int, float]]:
    """What ``dedupe="near"`` drops: ``(row, the kept row it copies, their cosine)``, in the order chosen.

    In each group (rows < 0 take no part), rows are taken by preference: the most pixels (the least re-encoded,
    resized or cropped copy), then the path. A row is a copy when a row already kept is of its own family and
    forms a pair with it (cosine >= the threshold); it names the most similar one. So a group joined by a chain
    of pairs (a ~ b ~ c with a, c apart) keeps what is not a copy of a kept image, and an image and its copy
    under two families are both kept: which label is right is a label issue's question, not a duplicate's
    (hostile tester: the mislabelled copy was kept and the correctly labelled original dropped)."""
    near: dict[int, dict[int, float]] = {}
    for a, b, s in zip(i.tolist(), j.tolist(), sim.tolist()):
        if groups[a] >= 0 and groups[b] >= 0:
            near.setdefault(a, {})[b] = near.setdefault(b, {})[a] = s
    out, kept = [], set()
    for _, rows in _members(groups):
        for r in sorted(rows.tolist(), key=lambda r: (-pixels[r], paths[r])):
            pairs = [(s, k) for k, s in near.get(r, {}).items() if k in kept and labels[k] == labels[r]]
            if pairs:
                s, k = max(pairs)
                out.append((r, k, s))
            else:
                kept.add(r)
    return out


def pair_table(paths: np.ndarray, labels: np.ndarray, i: np.ndarray, j: np.ndarray, sim: np.ndarray,
               groups: np.ndarray) -> "pd.DataFrame":
    """near_duplicates.csv: one row per pair, most similar first."""
    import pandas as pd

    df = pd.DataFrame({"path_a": paths[i], "path_b": paths[j], "family_a": labels[i], "family_b": labels[j],
                       "similarity": np.round(sim.astype(float), 5), "group": groups[i]}, columns=PAIR_COLUMNS)
    return df.sort_values(["similarity", "path_a"], ascending=[False, True], kind="stable").reset_index(drop=True)
