"""How well clean finds planted dirt: outliers, swapped labels, near-duplicates. Real images, real weights.

Builds a collection from real photos that scikit-image/scikit-learn/matplotlib ship (10 imbalanced families
of 12-120 images; ``_clean_data.py``), plants 21 outliers, 28 swapped labels and 20 near-duplicate copies,
runs ``catalog`` and ``clean`` (the real Ray pipeline, default settings) with EfficientNet-Lite0 ImageNet
features, then scores every policy side by side on the same embeddings: the old fixed share, the calibrated
thresholds (the default), cleanlab's defaults and the tuned label-issue settings, near-duplicate thresholds,
and the cost of the near-duplicate search at 100k and 1M embeddings. Needs the ``test`` extra.

    PYTHONPATH=$PWD python benchmarks/clean_quality.py --seeds 0 1     # ~3 min on 2 CPU cores
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
# Ray's embedding actors import the embedder factory from this folder.
os.environ["PYTHONPATH"] = os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])
sys.path.insert(0, str(HERE))

EMBEDDER = "_clean_data:efficientnet_lite0_embedder"
FILTERS = ("prune_by_noise_rate", "both", "confident_learning", "predicted_neq_given")


def rel(path: str) -> str:
    return "/".join(path.rsplit("/", 2)[-2:])


def run_pipeline(root: Path, seed: int) -> dict:
    """Build the collection, catalog and clean it with default settings; return the run's tables and truth."""
    import pandas as pd

    from _clean_data import build
    from speciesfam.config import CleanConfig
    from speciesfam.data.catalog import run_catalog
    from speciesfam.data.clean import run_clean

    truth = build(root / "images", seed=seed)
    run = root / "run"
    manifest = run_catalog(str(root / "images"), str(run))
    t0 = time.perf_counter()
    cleaned = run_clean(str(run), CleanConfig(embedder=EMBEDDER, batch_size=32))
    emb = pd.read_parquet(run / "embeddings.parquet")
    return {"truth": truth, "manifest": manifest, "cleaned": cleaned, "emb": emb, "run": run,
            "seconds": time.perf_counter() - t0, "issues": pd.read_csv(run / "label_issues.csv")}


def pr(found: set, true: set) -> tuple[float, float]:
    hit = len(found & true)
    return hit / max(len(true), 1), hit / max(len(found), 1)


def outlier_rows(r: dict) -> list[tuple]:
    """(policy, removed, outliers found, recall, false removals, false-removal rate) per policy."""
    from speciesfam.data.outliers import plan_removals, score_families

    emb, truth = r["emb"], r["truth"]
    paths = emb["path"].map(rel).to_numpy()
    labels, x = emb["label"].to_numpy(), np.stack(emb["embedding"].to_numpy())
    planted = set(truth["outliers"])
    other = {s["path"] for s in truth["swaps"]} | {c[1] for c in truth["copies"]}  # neither outliers nor good
    good = set(paths) - planted - other
    rows = []
    policies = [("quota 5%", "isolation_forest", {"removal": "quota", "contamination": 0.05}),
                ("quota 5%", "centroid", {"removal": "quota", "contamination": 0.05})]
    policies += [(f"threshold z>{z:g}", det, {"removal": "threshold", "outlier_z": z})
                 for det in ("centroid", "isolation_forest", "lof") for z in (3, 4, 5, 6, 8)]
    scores = {det: score_families(labels, x, det) for det in ("centroid", "isolation_forest", "lof")}
    for name, det, kw in policies:
        removed, _ = plan_removals(labels, scores[det], min_keep=6, **kw)
        found = set(paths[removed])
        rows.append((f"{name} {det}", len(found), len(found & planted), len(found & planted) / len(planted),
                     len(found & good), len(found & good) / len(good)))
    cl = r["cleaned"]
    out = set(cl.loc[cl["status"] == "removed", "path"].map(rel))
    rows.append(("**pipeline default** (after label-issue split)", len(out), len(out & planted),
                 len(out & planted) / len(planted), len(out & good), len(out & good) / len(good)))
    return rows


def label_rows(r: dict) -> list[tuple]:
    """(setting, flagged, swaps found, recall, precision) for logistic-regression C x cleanlab filter_by, each
    through the pipeline's own logic (all rows; outliers that fit no other family leave the table)."""
    from speciesfam.config import CleanConfig
    from speciesfam.data import label_issues
    from speciesfam.data.clean import flag_outliers, label_issue_table

    x = np.stack(r["emb"]["embedding"].to_numpy())
    swaps = {s["path"] for s in r["truth"]["swaps"]}
    rows, default_c = [], label_issues.LOGREG_C
    try:
        for c in (1.0, 10.0):
            label_issues.LOGREG_C = c
            for f in FILTERS:
                cfg = CleanConfig(embedder=EMBEDDER, label_issue_filter=f)
                emb = flag_outliers(r["emb"].copy(), x, cfg)
                found = set(label_issue_table(emb, x, cfg)["path"].map(rel))
                rec, prec = pr(found, swaps)
                tag = " (cleanlab + sklearn defaults)" if (c, f) == (1.0, "prune_by_noise_rate") else ""
                tag += " **default**" if (c, f) == (default_c, CleanConfig.label_issue_filter) else ""
                rows.append((f"C={c:g}, {f}{tag}", len(found), len(found & swaps), rec, prec))
    finally:
        label_issues.LOGREG_C = default_c
    return rows


def neardup_rows(r: dict) -> list[tuple]:
    """(threshold, pairs, planted pairs grouped, recall, other pairs, largest group) per threshold."""
    from speciesfam.data import near_duplicates as nd

    emb, truth = r["emb"], r["truth"]
    paths = emb["path"].map(rel).to_numpy()
    x = np.stack(emb["embedding"].to_numpy())
    at = {p: i for i, p in enumerate(paths)}
    planted = [(at[a], at[b]) for a, b in truth["copies"] if a in at and b in at]
    rows = []
    for t in (0.85, 0.9, 0.93, 0.95, 0.97, 0.98):
        i, j, _ = nd.similar_pairs(x, t)
        g = nd.group_ids(len(x), i, j)
        hit = sum(g[a] >= 0 and g[a] == g[b] for a, b in planted)
        planted_set = {tuple(sorted(p)) for p in planted}
        other = sum((a, b) not in planted_set for a, b in zip(i.tolist(), j.tolist()))
        rows.append((t, len(i), hit, hit / len(planted), other, int(np.bincount(g[g >= 0]).max()) if len(i) else 0))
    return rows


def straddling(r: dict) -> tuple[int, int]:
    """Planted copy pairs whose two images sit in different splits: in the catalog, and after clean."""
    def count(df):
        split = dict(zip(df["path"].map(rel), df["split"]))
        return sum(split.get(a) != split.get(b) for a, b in r["truth"]["copies"])
    return count(r["manifest"]), count(r["cleaned"])


def search_cost(dim: int = 1280, sizes=(2000, 4000, 8000)) -> list[tuple]:
    """Seconds of the blockwise exact search on random unit vectors; an n^2 fit extrapolated to 100k and 1M."""
    from speciesfam.data.near_duplicates import similar_pairs

    rng = np.random.default_rng(0)
    out = []
    for n in sizes:
        x = rng.normal(size=(n, dim)).astype(np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        t0 = time.perf_counter()
        similar_pairs(x, 0.95)
        out.append((n, time.perf_counter() - t0))
    a = np.mean([t / n**2 for n, t in out])  # seconds per pair (dot product of two d-vectors)
    out += [(n, a * n**2) for n in (100_000, 1_000_000)]
    return out


def table(head: list[str], rows: list[tuple]) -> str:
    fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731
    return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] +
                     ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--out", default=None, help="JSON file for the numbers")
    p.add_argument("--workdir", default=None, help="keep the runs here (re-runs reuse the cached embeddings)")
    args = p.parse_args()
    import ray

    report = {}
    try:
        for seed in args.seeds:
            with tempfile.TemporaryDirectory() as tmp:
                root = Path(args.workdir or tmp) / f"seed{seed}"
                if root.exists():
                    shutil.rmtree(root / "images", ignore_errors=True)
                r = run_pipeline(root, seed)
                before, after = straddling(r)
                n = int((r["manifest"]["status"] == "ok").sum())
                print(f"\n## Seed {seed}: {n} usable images, clean (embed + all detectors) {r['seconds']:.0f} s\n")
                outliers, labels, dups = outlier_rows(r), label_rows(r), neardup_rows(r)
                print(table(["outlier policy", "removed", "planted found (of 21)", "recall", "false removals",
                             "false-removal rate"], outliers))
                print()
                print(table(["label issues: LogReg C, cleanlab filter_by", "flagged", "swaps found (of 28)", "recall",
                             "precision"], labels))
                print()
                print(table(["near-dup cosine >=", "pairs", "planted pairs grouped (of 20)", "recall", "other pairs",
                             "largest group"], dups))
                print(f"\nplanted copy pairs straddling splits: catalog {before}, after clean {after}")
                report[seed] = {"outliers": outliers, "labels": labels, "near": dups, "straddling": [before, after],
                                "seconds": r["seconds"]}
    finally:
        ray.shutdown()
    cost = search_cost()
    print("\n## Near-duplicate search cost (exact, blockwise, 1280-d float32, this machine)\n")
    print(table(["embeddings", "seconds (last two extrapolated, n^2)"], [(f"{n:,}", s) for n, s in cost]))
    if args.out:
        Path(args.out).write_text(json.dumps({"seeds": report, "cost": cost}, indent=1, default=str))


if __name__ == "__main__":
    main()
