"""A generated run folder of embeddings (no images) for probe-search tests and benchmarks.

The reference data has ~12,000 images in 202 families of 29-300 images; its CLIP embeddings are not available
offline. ``make_embedding_run`` writes what the clean stage would (``manifest.parquet``,
``clean_manifest.parquet``, ``embeddings.parquet``) for Gaussian families on the unit sphere: imbalanced
family sizes, each family a few sub-clusters (species), noise chosen so that a probe's val macro-F1 is well
below 1 and the hyperparameters matter.
"""

from __future__ import annotations

import numpy as np

from .. import layout, storage

MODEL_ID = "synthetic-gaussian"


def make_embedding_run(workdir: str, rows: int = 12_000, dim: int = 512, families: int = 202,
                       noise: float = 4.0, seed: int = 0) -> dict[str, int]:
    """Write a run folder with ``rows`` embeddings of size ``dim``; returns rows per split.

    Splits are stratified per family (70/15/15); paths are placeholders (``synthetic://...``): probe trials
    never read images.
    """
    import pandas as pd

    rng = np.random.default_rng(seed)
    sizes = np.exp(rng.uniform(np.log(29), np.log(300), families))  # family sizes like the reference data's
    counts = np.maximum(np.round(sizes / sizes.sum() * rows).astype(int), 7)
    centers = rng.normal(size=(families, dim)) / np.sqrt(dim)
    labels, splits, vecs = [], [], []
    for fam, n in enumerate(counts):
        species = centers[fam] + rng.normal(size=(3, dim)) * 0.6 / np.sqrt(dim)
        x = species[rng.integers(0, 3, n)] + rng.normal(size=(n, dim)) * noise / np.sqrt(dim)
        vecs.append(x)
        labels += [f"Family{fam:03d}"] * n
        split = np.array(["train"] * n, dtype=object)
        order = rng.permutation(n)
        n_val = n_test = max(1, int(round(0.15 * n)))
        split[order[:n_val]], split[order[n_val:n_val + n_test]] = "val", "test"
        splits += list(split)
    x = np.concatenate(vecs).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)  # CLIP embeddings are L2-normalised
    sha = [f"{i:064x}" for i in range(len(x))]
    manifest = pd.DataFrame({"path": [f"synthetic://{s[-12:]}.jpg" for s in sha], "label": labels,
                             "status": layout.OK, "reason": "", "split": splits, "sha256": sha})
    storage.write_table(manifest, layout.path(workdir, layout.MANIFEST))
    storage.write_table(manifest, layout.path(workdir, layout.CLEAN_MANIFEST))
    emb = pd.DataFrame({"path": manifest["path"], "label": labels, "sha256": sha, "embedding": list(x),
                        "model_id": MODEL_ID})
    storage.write_table(emb, layout.path(workdir, layout.EMBEDDINGS))
    return manifest["split"].value_counts().to_dict()
