"""The weights pre-check's import, side by side in one run: a child process importing the whole open_clip
package (what ``embedders.fetch_pretrained``'s child did) vs ``open_clip.pretrained`` alone (what it does now).

    python benchmarks/clean_start.py [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from speciesfam.data.embedders import PRETRAINED_ALONE

QUERY = "get_pretrained_cfg('ViT-B-32', 'laion2b_s34b_b79k')"
WHOLE = f"import open_clip\nfrom open_clip.pretrained import get_pretrained_cfg\n{QUERY}"
ALONE = f"{PRETRAINED_ALONE}\n{QUERY}"  # the pre-check's own import


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    runs = parser.parse_args().runs
    times: dict[str, list[float]] = {"whole package": [], "open_clip.pretrained alone": []}
    for _ in range(runs):  # alternating, so both see the same machine
        for name, code in zip(times, (WHOLE, ALONE)):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True)
            times[name].append(time.perf_counter() - start)
    for name, values in times.items():
        print(f"{name}: median {statistics.median(values):.2f} s ({', '.join(f'{v:.2f}' for v in values)})")
    whole, alone = (statistics.median(v) for v in times.values())
    print(f"ratio whole / alone: {whole / alone:.2f}x")


if __name__ == "__main__":
    main()
