"""The one decode path: every odd image kind becomes RGB uint8; every bad file gets a reason."""

import io

import numpy as np
import pytest
from PIL import Image

from speciesfam.data.images import DecodeError, decode_rgb, probe


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


@pytest.mark.parametrize("mode,fmt", [("L", "JPEG"), ("RGBA", "PNG"), ("P", "PNG"), ("CMYK", "JPEG"),
                                      ("I;16", "PNG"), ("LA", "PNG"), ("1", "PNG"), ("RGB", "WEBP")])
def test_modes_become_rgb_uint8(mode, fmt):
    img = Image.new("RGB", (20, 10), (200, 40, 40)).convert(mode) if mode != "I;16" else \
        Image.fromarray(np.linspace(0, 60000, 200, dtype=np.uint16).reshape(10, 20))
    arr = decode_rgb(encode(img, fmt))
    assert arr.dtype == np.uint8 and arr.shape == (10, 20, 3)
    if mode == "I;16":  # 16-bit range is rescaled, not clipped to white
        assert arr.min() == 0 and arr.max() == 255


def test_rgba_transparent_pixels_become_white():
    img = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    assert (decode_rgb(encode(img, "PNG")) == 255).all()


def test_exif_rotation_is_applied():
    img = Image.new("RGB", (30, 10), (0, 128, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    data = encode(img, "JPEG", exif=exif.tobytes())
    assert decode_rgb(data).shape == (30, 10, 3)
    assert probe(data)["width"] == 10


def test_resize():
    assert decode_rgb(encode(Image.new("RGB", (50, 20)), "PNG"), size=16).shape == (16, 16, 3)


@pytest.mark.parametrize("data,reason", [
    (b"", "empty file"),
    (b"hello, this is a text file", "not an image"),
    (None, "corrupt or truncated"),
])
def test_bad_files_raise_with_reason(data, reason):
    if data is None:
        data = encode(Image.effect_noise((64, 64), 50).convert("RGB"), "JPEG")[:400]
    with pytest.raises(DecodeError, match=reason):
        decode_rgb(data)


def test_decompression_bomb_is_refused(monkeypatch):
    import speciesfam.data.images as images

    monkeypatch.setattr(images, "MAX_PIXELS", 100)
    with pytest.raises(DecodeError, match="decompression bomb"):
        decode_rgb(encode(Image.new("RGB", (20, 20)), "PNG"))
