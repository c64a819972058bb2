"""The one decode path every stage uses: any image file -> RGB uint8 array, or a clear reason why not.

Grayscale, RGBA/LA (composited on white), palette, CMYK, 16-bit and EXIF-rotated images all become
RGB uint8. Zero-byte, truncated and non-image files and decompression bombs raise ``DecodeError`` with
a short reason, so a caller can record it and go on.
"""

from __future__ import annotations

import functools
import io
import re
import warnings

import numpy as np
from PIL import Image

# Pillow's own bomb limit is ~89 Mpx (warning) / 179 Mpx (error). 100 Mpx is larger than any real
# photograph in the collections we target (EOL images are < 20 Mpx) and small enough to refuse bombs.
MAX_PIXELS = 100_000_000

# The decode path's version, recorded beside what is computed from its pixels (the image cache, embeddings):
# raise it when the pixels it gives for some file change, so that those are computed again. 1: up to
# 2026-12-04; 2: a float image's NaN pixels, 32-bit integer samples and a PNG's key-colour transparency.
DECODER = 2


class DecodeError(ValueError):
    """An image could not be decoded; ``str(err)`` is the reason recorded in reports."""


# Leading bytes of common image formats: files are recognised by content, never by their extension.
_MAGIC = ((b"\xff\xd8\xff", "JPEG"), (b"\x89PNG\r\n\x1a\n", "PNG"), (b"GIF87a", "GIF"), (b"GIF89a", "GIF"),
          (b"BM", "BMP"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
          (b"\x00\x00\x01\x00", "ICO"), (b"8BPS", "PSD"), (b"\xff\x0a", "JPEG XL"),
          (b"\x00\x00\x00\x0cJXL \r\n\x87\n", "JPEG XL"))
_FTYP = {b"heic": "HEIC", b"heix": "HEIC", b"hevc": "HEIC", b"heim": "HEIC", b"heis": "HEIC", b"mif1": "HEIF",
         b"msf1": "HEIF", b"avif": "AVIF", b"avis": "AVIF"}


def sniff(head: bytes) -> str | None:
    """The image format named by a file's first 16 bytes, or None when they name no format we know.

    Only a hint for reasons and for skipping the decode of large non-images: Pillow's own identification
    (which knows more formats, some without magic bytes) decides what is an image.
    """
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[4:8] == b"ftyp" and head[8:12] in _FTYP:
        return _FTYP[head[8:12]]
    return next((fmt for magic, fmt in _MAGIC if head.startswith(magic)), None)


@functools.cache
def _heif() -> bool:
    """Pillow opens HEIC/HEIF (phones' photos) once pillow-heif registers its opener; False if not installed."""
    try:
        from pillow_heif import register_heif_opener
    except ImportError:
        return False
    register_heif_opener()
    return True


def open_image(data: bytes) -> Image.Image:
    """Open and fully load image bytes; raise ``DecodeError`` with the reason on any failure."""
    if not data:
        raise DecodeError("empty file (0 bytes)")
    _heif()
    try:
        with warnings.catch_warnings():
            # MAX_PIXELS is the limit: Pillow's own warning comes at 89.5 Mpx (and its error at twice that)
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            warnings.simplefilter("ignore", UserWarning)  # 'Corrupt EXIF data': read as far as it goes (upright)
            img = Image.open(io.BytesIO(data))
            if img.width * img.height > MAX_PIXELS:
                raise DecodeError(f"decompression bomb: {img.width * img.height} px ({img.width}x{img.height}) > "
                                  f"{MAX_PIXELS} px")  # as Pillow's own refusal is said, with the size it lacks
            img.load()  # force the full decode so truncated files fail here, not later
    except DecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:  # Pillow's own: over 179 Mpx
        size = re.search(r"\((\d+) pixels\)", str(err))  # said in our limit's words (it gave Pillow's limit)
        raise DecodeError(f"decompression bomb: {size.group(1) + ' px' if size else 'its size'} > {MAX_PIXELS} px"
                          ) from err
    except Image.UnidentifiedImageError as err:
        fmt = sniff(data[:16])
        Image.init()
        known = {"HEIC": "HEIF"}.get(fmt, fmt.replace(" ", "")) if fmt else None  # the name Pillow gives it
        if known in Image.OPEN:  # a format it reads: this file's data is the trouble
            raise DecodeError(f"corrupt or truncated {fmt} image, or a {fmt} variant Pillow cannot read (its "
                              f"header is {fmt}'s, but Pillow could not read the rest)") from err
        if fmt in ("HEIC", "HEIF") and not _heif():  # a dependency installed without its own dependencies
            raise DecodeError(f"{fmt} image, but pillow-heif is not installed (`pip install pillow-heif`: speciesfam "
                              "reads HEIC/HEIF with it)") from err
        if fmt:  # an image in a format Pillow cannot decode (an AVIF without Pillow's libavif, say)
            raise DecodeError(f"{fmt} image, but this Pillow cannot decode {fmt}") from err
        if b"<svg" in data[:4096].lower():  # a drawing in text: said as one (round 66)
            raise DecodeError("SVG drawing (vector graphics), not a raster image: convert it to PNG to use it "
                              "(e.g. `rsvg-convert -o x.png x.svg`)") from err
        raise DecodeError("not an image file (format not recognised)") from err
    except (OSError, SyntaxError, ValueError) as err:
        plain = _without_png_text(data) if "MAX_TEXT" in str(err) else None
        if plain is not None:  # a text chunk or profile over Pillow's bomb limit (a huge comment): the pixels are fine
            return open_image(plain)  # and the file was unreadable with Pillow's words (rounds 67, 68)
        if "Ghostscript" in str(err):  # not corrupt: a program Pillow needs is missing (round 48)
            raise DecodeError("EPS image, but Pillow reads EPS with Ghostscript, which is not installed (`apt "
                              "install ghostscript`), or convert it to PNG") from err
        fmt = sniff(data[:16])  # the format, and the decoder's words on one line (a HEIC's ended in a newline that
        raise DecodeError(f"corrupt or truncated {fmt + ' ' if fmt else ''}image: {' '.join(str(err).split())}"
                          ) from err  # split CSV rows: round 49)
    return img


def _without_png_text(data: bytes) -> bytes | None:
    """A PNG's bytes without its text chunks (tEXt, zTXt, iTXt) and colour profile (iCCP, which ``to_rgb`` does
    not apply): metadata, never pixels; or None when ``data`` is no PNG or has no such chunk."""
    import struct

    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return None
    kept, at = [data[:8]], 8
    while at + 12 <= len(data):
        end = at + 12 + struct.unpack(">I", data[at:at + 4])[0]
        if data[at + 4:at + 8] not in (b"tEXt", b"zTXt", b"iTXt", b"iCCP"):
            kept.append(data[at:end])
        at = end
    kept.append(data[at:])  # a truncated tail stays: Pillow says what is wrong with it
    plain = b"".join(kept)
    return plain if len(plain) < len(data) else None


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL image to an EXIF-upright 8-bit RGB image."""
    bits = (getattr(img, "tag_v2", None) or {}).get(258)  # a TIFF's BitsPerSample (gone from the turned copy)
    img = upright(img)
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        key = img.info.get("transparency")  # a 16-bit PNG's tRNS key grey: on white, as at 8 bits (round 66)
        keyed = np.asarray(img) == key if isinstance(key, int) and not isinstance(key, bool) else None
        arr = np.asarray(img, dtype=np.float64)
        finite = np.isfinite(arr)  # a float image's NaN/inf pixels made its range NaN: the whole image black
        lo, hi = (float(arr[finite].min()), float(arr[finite].max())) if finite.any() else (0.0, 0.0)
        wide = img.mode == "I" and (bits == 32 or bits == (32,))  # 32-bit TIFF samples: not 16-bit ones
        if img.mode.startswith("I;16") or (img.mode == "I" and not wide and lo >= 0 and hi <= 65535):
            # 16-bit grayscale (PNG, TIFF): the same picture as its 8-bit version, 0..65535 -> 0..255 (a
            # per-image stretch made a near-uniform image noise and changed what the models saw)
            arr = arr / 257.0
        else:  # 32-bit integer or float samples have no fixed scale: their own range to 0..255, not clipped
            arr = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)
        img = Image.fromarray(np.where(finite, arr, 0.0).round().astype(np.uint8), mode="L")
        if keyed is not None and keyed.any():
            img = img.convert("LA")
            img.putalpha(Image.fromarray(np.where(keyed, 0, 255).astype(np.uint8), mode="L"))
    if img.mode == "P" or (img.mode in ("L", "RGB") and "transparency" in img.info):  # a PNG's tRNS key colour too
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGB", img.size, (255, 255, 255))
        background.paste(img.convert("RGBA"), mask=img.convert("RGBA").getchannel("A"))
        return background
    return img.convert("RGB")


def decode_rgb(data: bytes, size: int | None = None) -> np.ndarray:
    """Decode image bytes to an RGB uint8 array of shape (H, W, 3), resized to ``size`` x ``size`` if given."""
    img = to_rgb(open_image(data))
    return np.asarray(resize(img, size) if size is not None else img, dtype=np.uint8)


def resize(img: Image.Image, size: int) -> Image.Image:
    """Bilinear resize to ``size`` x ``size``: the one resize of training, the image cache and CNN bundles."""
    return img if img.size == (size, size) else img.resize((size, size), Image.Resampling.BILINEAR)


def changed_reason(sha256: str) -> str:
    """Why a file is not the image catalog hashed (the row's reason in clean and evaluate)."""
    return f"changed since catalog (its sha256 is not the one catalog recorded, {sha256[:12]}...)"


class ChangedError(DecodeError):
    """The file is not the one catalog read (its sha256 differs)."""


# EXIF orientation -> the turn that makes the image upright (the TIFF/EXIF standard's, as Pillow's exif_transpose)
_TURNS = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
          5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
          8: Image.Transpose.ROTATE_90}


def upright(img: Image.Image) -> Image.Image:
    """``img`` turned as its EXIF orientation says. A damaged EXIF block is read as far as it goes, without
    Pillow's 'Corrupt EXIF data' UserWarning (it reached predict's console: hostile tester); one Pillow cannot
    read at all leaves the image as stored. Only the orientation is read: Pillow's ``exif_transpose`` also
    writes the EXIF block back without it, and a tag of the wrong type (XResolution as text) made that raise
    TypeError in every stage (hostile tester round 42)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        try:
            orientation = img.getexif().get(0x0112)  # ExifTags.Base.Orientation
        except Exception:  # noqa: BLE001 -- EXIF is a hint: any block Pillow cannot parse reads as none
            orientation = None
    turn = _TURNS.get(orientation) if isinstance(orientation, int) else None
    return img.transpose(turn) if turn is not None else img


def read_rgb(path: str, size: int | None = None, sha256: str | None = None) -> np.ndarray:
    """``decode_rgb`` of a file (local path or URI). Raises ``DecodeError`` for unreadable files too (a missing
    file, an I/O error, a URI scheme no filesystem here reads: pyarrow's ArrowInvalid is a ValueError), and
    ``ChangedError`` when ``sha256`` is given and the file's differs."""
    return _read(path, size, sha256, digest=False)[0]


def read_rgb_sha256(path: str, size: int | None = None, sha256: str | None = None) -> tuple[np.ndarray, str]:
    """``read_rgb`` and the sha256 of the bytes it decoded (what tells predict an image the model has seen)."""
    return _read(path, size, sha256, digest=True)


def _read(path: str, size: int | None, sha256: str | None, digest: bool) -> tuple[np.ndarray, str]:
    """The decoded image and, when ``sha256`` or ``digest`` asks for it, the sha256 of its bytes ('' otherwise)."""
    import hashlib

    from .. import pathtext, storage

    try:
        data = storage.read_bytes(path)
    except (OSError, ValueError) as err:
        raise DecodeError(pathtext.read_error(err, path)) from err
    try:
        image = decode_rgb(data, size=size)
    except OSError as err:  # PIL reports a truncated file while loading its pixels
        raise DecodeError(str(err) or type(err).__name__) from err
    actual = hashlib.sha256(data).hexdigest() if sha256 or digest else ""
    if sha256 and actual != sha256:  # a damaged file is unreadable first
        raise ChangedError(changed_reason(sha256))
    return image, actual


def probe(data: bytes) -> dict:
    """Return width, height, the original mode and the frames of an image (an animated GIF, a multi-page TIFF:
    every stage reads its first), decoding it fully to prove it is readable."""
    img = open_image(data)
    turned = upright(img)
    return {"width": turned.width, "height": turned.height, "mode": img.mode, "frames": _frames(img)}


def _frames(img: Image.Image) -> int:
    """How many frames an image holds (an animated GIF, a multi-page TIFF), or 0 when it has more than one but they
    cannot be counted (a TIFF whose page list is damaged made Pillow raise TypeError: catalog crashed, round 68).
    A camera's MPO JPEG (the photo and its preview) is one image."""
    if img.format == "MPO":
        return 1
    try:
        with warnings.catch_warnings():  # 'Corrupt EXIF data' of a damaged page: the count is unknown, said so
            warnings.simplefilter("ignore", UserWarning)
            return int(getattr(img, "n_frames", 1))
    except Exception:  # noqa: BLE001 -- only a count for the report: the first frame is read already
        return 0
