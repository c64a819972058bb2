"""Procedurally generated image collections: the bundled demo data and the tests' data.

Each "family" is a distinct kind of textured creature (body shape, colour, pattern, habitat colour) drawn
at a random position, size and angle with noise, so a small CNN can learn it. Planted into the families
are the kinds of junk real collections hold: maps, specimen labels, line drawings (outliers), grayscale
scans, palette/RGBA PNGs, an exact duplicate and a corrupt file. Everything is made from a seed: the same
call makes the same bytes. ``python -m speciesfam.data.synthetic OUT`` regenerates the demo data.
"""

from __future__ import annotations

import argparse
import io
import json
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

# name: (body RGB, habitat RGB, shape, pattern)
FAMILIES: dict[str, tuple[tuple[int, int, int], tuple[int, int, int], str, str]] = {
    "Felidae": ((214, 150, 60), (90, 140, 60), "ellipse", "stripes"),
    "Ranidae": ((70, 170, 70), (60, 90, 140), "ellipse", "spots"),
    "Papilionidae": ((240, 220, 60), (120, 180, 90), "wings", "spots"),
    "Accipitridae": ((110, 80, 50), (150, 190, 230), "wings", "plain"),
    "Salmonidae": ((200, 200, 215), (30, 70, 120), "fish", "spots"),
    "Orchidaceae": ((200, 90, 200), (50, 110, 50), "star", "plain"),
}
DEMO_COUNTS = {"Felidae": 36, "Ranidae": 28, "Papilionidae": 22, "Accipitridae": 16, "Salmonidae": 12,
               "Orchidaceae": 9}
OUTLIER_KINDS = ("map", "label", "drawing")


def _shape_polygon(shape: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    if shape == "star":
        pts = [(r if i % 2 == 0 else r * 0.45, i * math.pi / 5) for i in range(10)]
    elif shape == "wings":
        pts = [(r, 0.3), (0.35 * r, 1.2), (r, 2.0), (r * 0.2, math.pi), (r, 4.3), (0.35 * r, 5.1), (r, 5.9)]
    elif shape == "fish":
        pts = [(r, 0.0), (0.5 * r, 1.0), (0.4 * r, 2.2), (r, 2.8), (r, 3.5), (0.4 * r, 4.1), (0.5 * r, 5.3)]
    else:  # ellipse as a 24-gon with aspect 1.6
        pts = [(r * (1.0 if i % 2 else 0.98), 2 * math.pi * i / 24) for i in range(24)]
        return [(cx + rr * math.cos(t + angle), cy + rr / 1.6 * math.sin(t + angle)) for rr, t in pts]
    return [(cx + rr * math.cos(t + angle), cy + rr * math.sin(t + angle)) for rr, t in pts]


def creature(family: str, rng: np.random.Generator, size: int = 96) -> Image.Image:
    """One image of ``family``: a textured body on a noisy habitat background."""
    body, habitat, shape, pattern = FAMILIES[family]
    jitter = lambda c: tuple(int(np.clip(v + rng.normal(0, 18), 0, 255)) for v in c)  # noqa: E731
    img = Image.new("RGB", (size, size), jitter(habitat))
    draw = ImageDraw.Draw(img)
    for _ in range(6):  # habitat clutter: leaves, stones, ripples
        x, y = rng.uniform(0, size, 2)
        s = rng.uniform(3, size / 6)
        draw.ellipse([x - s, y - s / 2, x + s, y + s / 2], fill=jitter(habitat))
    cx, cy = rng.uniform(0.35, 0.65, 2) * size
    r = rng.uniform(0.22, 0.36) * size
    angle = rng.uniform(0, 2 * math.pi)
    poly = _shape_polygon(shape, cx, cy, r, angle)
    draw.polygon(poly, fill=jitter(body), outline=(20, 20, 20))
    dark = tuple(int(v * 0.35) for v in body)
    if pattern == "stripes":
        for k in range(-3, 4):
            off = k * r / 3.5
            dx, dy = math.cos(angle + math.pi / 2) * r, math.sin(angle + math.pi / 2) * r
            ox, oy = cx + math.cos(angle) * off, cy + math.sin(angle) * off
            draw.line([ox - dx * 0.5, oy - dy * 0.5, ox + dx * 0.5, oy + dy * 0.5], fill=dark, width=3)
    elif pattern == "spots":
        for _ in range(7):
            a, d = rng.uniform(0, 2 * math.pi), rng.uniform(0, r * 0.55)
            x, y = cx + d * math.cos(a), cy + d * math.sin(a)
            s = rng.uniform(2, 5)
            draw.ellipse([x - s, y - s, x + s, y + s], fill=dark)
    arr = np.asarray(img, dtype=np.float32) + rng.normal(0, 8, (size, size, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def outlier(kind: str, rng: np.random.Generator, size: int = 96) -> Image.Image:
    """A non-photo that real collections hold: a map, a specimen label or a line drawing."""
    if kind == "map":
        img = Image.new("RGB", (size, size), (236, 226, 196))
        draw = ImageDraw.Draw(img)
        for i in range(0, size, size // 6):
            draw.line([i, 0, i, size], fill=(180, 180, 180))
            draw.line([0, i, size, i], fill=(180, 180, 180))
        pts = [(x, size / 2 + size / 4 * math.sin(x / 9 + rng.uniform(0, 6))) for x in range(0, size, 4)]
        draw.line(pts, fill=(40, 90, 200), width=3)
        draw.polygon([tuple(rng.uniform(0, size, 2)) for _ in range(5)], outline=(150, 60, 40))
    elif kind == "label":
        img = Image.new("RGB", (size, size), (250, 250, 245))
        draw = ImageDraw.Draw(img)
        for row in range(6):
            y = 10 + row * (size - 20) / 6
            draw.text((6, y), "".join(rng.choice(list("ABCDEFGHIKLMNOPRSTUVXYZ0123456789 ."), 14)), fill=(0, 0, 0))
        draw.rectangle([2, 2, size - 3, size - 3], outline=(0, 0, 0))
    elif kind == "drawing":
        img = Image.new("RGB", (size, size), (255, 255, 255))
        draw = ImageDraw.Draw(img)
        for _ in range(5):
            draw.line([tuple(rng.uniform(0, size, 2)) for _ in range(4)], fill=(30, 30, 30), width=2)
        draw.arc([size * 0.2, size * 0.2, size * 0.8, size * 0.7], 0, 300, fill=(30, 30, 30), width=2)
    else:
        raise ValueError(f"unknown outlier kind {kind!r}; valid kinds: {OUTLIER_KINDS}")
    return img


def _jpeg(img: Image.Image, quality: int = 85) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def make_collection(out: str | Path, counts: dict[str, int] | None = None, outliers_per_family: int = 1,
                    grayscale: int = 4, size: int = 96, seed: int = 0, extras: bool = True) -> dict:
    """Write a folder-per-family collection to ``out`` and return what was planted where.

    Args:
        out: folder to create (one subfolder per family).
        counts: images per family (creatures only); default ``DEMO_COUNTS`` (imbalanced).
        outliers_per_family: maps/labels/drawings planted into each of the largest families.
        grayscale: how many creature images are saved as 8-bit grayscale.
        size: image side in pixels.
        seed: everything follows from it.
        extras: also plant an RGBA PNG, a palette PNG, an exact duplicate and a corrupt JPEG.

    Returns:
        ``{"outliers": [relative paths], "grayscale": [...], "corrupt": [...], "duplicates": [[a, b]]}``.
    """
    counts = dict(counts or DEMO_COUNTS)
    unknown = sorted(set(counts) - set(FAMILIES))
    if unknown:
        raise ValueError(f"make_collection: no drawing for families {unknown}; counts takes these: {sorted(FAMILIES)}")
    rng = np.random.default_rng(seed)
    out = Path(out)
    planted: dict[str, list] = {"outliers": [], "grayscale": [], "corrupt": [], "duplicates": []}
    first: dict[str, str] = {}
    for fam, n in counts.items():
        (out / fam).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img = creature(fam, rng, size)
            rel = f"{fam}/{fam.lower()}_{i:03d}.jpg"
            if len(planted["grayscale"]) < grayscale and i == 1:
                img = img.convert("L")
                planted["grayscale"].append(rel)
            (out / rel).write_bytes(_jpeg(img))
            first.setdefault(fam, rel)
    largest = sorted(counts, key=counts.get, reverse=True)
    for j, fam in enumerate(largest[: len(OUTLIER_KINDS)] if outliers_per_family else []):
        for k in range(outliers_per_family):
            kind = OUTLIER_KINDS[(j + k) % len(OUTLIER_KINDS)]
            rel = f"{fam}/{kind}_{k:02d}.jpg"
            (out / rel).write_bytes(_jpeg(outlier(kind, rng, size)))
            planted["outliers"].append(rel)
    if extras:
        fam_a, fam_b = largest[0], largest[1 % len(largest)]
        rgba = creature(fam_a, rng, size).convert("RGBA")
        rgba.putalpha(Image.new("L", rgba.size, 200))
        rgba.save(out / fam_a / "rgba_000.png")
        creature(fam_b, rng, size).convert("P", palette=Image.Palette.ADAPTIVE).save(out / fam_b / "palette_000.png")
        dup = f"{fam_a}/duplicate_of_{Path(first[fam_a]).stem}.jpg"
        (out / dup).write_bytes((out / first[fam_a]).read_bytes())
        planted["duplicates"].append([first[fam_a], dup])
        bad = f"{fam_b}/corrupt_000.jpg"
        (out / bad).write_bytes(_jpeg(creature(fam_b, rng, size))[:300])  # truncated mid-scan
        planted["corrupt"].append(bad)
    return planted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="folder to write (one subfolder per family)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    planted = make_collection(args.out, seed=args.seed)
    (Path(args.out).parent / "planted.json").write_text(json.dumps(planted, indent=1) + "\n")
    print(json.dumps(planted, indent=1))


if __name__ == "__main__":
    main()
