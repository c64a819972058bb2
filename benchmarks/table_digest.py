"""What checking a stage's table against its record costs (``stage_outputs.outputs_digest``), side by side in one
run with reading the table: the first digest in a process, and the same table checked again (cached on the
file's inode, size and modification time; a command checks a table up to 10 times).

    python benchmarks/table_digest.py --rows 12000 260000
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import pandas as pd


def manifest(rows: int) -> pd.DataFrame:
    """A cleaned manifest of ``rows`` images in 202 families, with clean's columns."""
    fam = [f"Family{i % 202:03d}" for i in range(rows)]
    return pd.DataFrame({"path": [f"/data/eol/{f}/img_{i:07d}.jpg" for i, f in enumerate(fam)], "label": fam,
                         "status": "ok", "reason": "", "split": np.random.default_rng(0).choice(["train", "val", "test"], rows),
                         "sha256": [f"{i:064x}" for i in range(rows)], "width": 512, "height": 384,
                         "outlier_z": np.random.default_rng(1).random(rows), "suggested_family": None})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[12000, 260000])
    args = parser.parse_args()
    from speciesfam import layout, stage_outputs, storage

    print("| rows | read the table s | first digest s | digest again s | first digest / read |")
    print("|---:|---:|---:|---:|---:|")
    for rows in args.rows:
        with tempfile.TemporaryDirectory() as run:
            manifest(rows).to_parquet(os.path.join(run, layout.CLEAN_MANIFEST))
            start = time.perf_counter()
            storage.read_table(os.path.join(run, layout.CLEAN_MANIFEST))
            read = time.perf_counter() - start
            start = time.perf_counter()
            stage_outputs.outputs_digest(run, "clean")
            first = time.perf_counter() - start
            start = time.perf_counter()
            stage_outputs.outputs_digest(run, "clean")
            again = time.perf_counter() - start
            print(f"| {rows:,} | {read:.3f} | {first:.3f} | {again:.5f} | {first / read:.1f}x |")


if __name__ == "__main__":
    main()
