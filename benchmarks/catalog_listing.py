"""What accounting for every file costs the catalog, side by side in one run (best of --repeats, alternating).

1. Listing: ``listing.walk`` (os.scandir, real-path tracking, links followed once) against pyarrow's recursive
   ``FileSelector`` (the listing the catalog used before; it follows a link loop until the OS refuses).
2. Reading: the catalog's ``_read`` (16 header bytes, then the rest, so a large non-image is never read
   whole) against one ``storage.read_bytes`` per file.

    python benchmarks/catalog_listing.py --files 20000 --images 2000
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time


def best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20000, help="files in the listing tree (100 folders)")
    parser.add_argument("--images", type=int, default=2000, help="8x8 PNGs read by the reading comparison")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import io

    import pyarrow.fs as pafs
    from PIL import Image

    from speciesfam import listing, storage
    from speciesfam.data.catalog import _read

    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.files):
            folder = os.path.join(tmp, "tree", f"fam{i % 100:03d}")
            os.makedirs(folder, exist_ok=True)
            open(os.path.join(folder, f"{i}.jpg"), "wb").close()
        tree = os.path.join(tmp, "tree")
        fs = pafs.LocalFileSystem()
        old = lambda: [i.path for i in fs.get_file_info(pafs.FileSelector(tree, recursive=True))  # noqa: E731
                       if i.type == pafs.FileType.File]
        new = lambda: listing.walk(tree)  # noqa: E731
        assert len(old()) == len(new()[0]) == args.files
        best(old, 1), best(new, 1)  # warm the OS caches, then measure alternately
        t_old, t_new = [], []
        for _ in range(args.repeats):
            t_old.append(best(old, 1))
            t_new.append(best(new, 1))
        print(f"listing {args.files} files: pyarrow FileSelector {min(t_old):.3f} s, listing.walk {min(t_new):.3f} s,"
              f" ratio walk/pyarrow {min(t_new) / min(t_old):.2f}")

        buf = io.BytesIO()
        Image.new("RGB", (8, 8), (1, 2, 3)).save(buf, format="PNG")
        paths = []
        for i in range(args.images):
            p = os.path.join(tmp, "imgs", f"{i}.png")
            os.makedirs(os.path.dirname(p), exist_ok=True)
            with open(p, "wb") as f:
                f.write(buf.getvalue() + i.to_bytes(4, "little"))
            paths.append(p)
        r_old, r_new = [], []
        for _ in range(args.repeats):
            r_old.append(best(lambda: [storage.read_bytes(p) for p in paths], 1))
            r_new.append(best(lambda: [_read(p) for p in paths], 1))
        print(f"reading {args.images} small images: read_bytes {min(r_old):.3f} s, header+rest {min(r_new):.3f} s, "
              f"ratio {min(r_new) / min(r_old):.2f}")


if __name__ == "__main__":
    main()
