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
    if mode == "I;16":  # 16-bit values scaled to 8 bits (value / 257), not clipped to white
        assert arr.min() == 0 and arr.max() == round(60000 / 257)


def test_a_16_bit_image_reads_like_its_8_bit_version():
    """Observed (hostile tester): 16-bit images were stretched to their own range, so a 16-bit copy of a grey
    picture decoded to other pixels (a near-uniform one to noise) and a bundle predicted another family."""
    grey = np.random.default_rng(0).integers(40, 60, (12, 16)).astype(np.uint8)
    eight = decode_rgb(encode(Image.fromarray(grey), "PNG"))
    for fmt in ("PNG", "TIFF"):
        sixteen = decode_rgb(encode(Image.fromarray(grey.astype(np.uint16) * 257), fmt))
        assert np.array_equal(sixteen, eight)
    floats = decode_rgb(encode(Image.fromarray(np.array([[-1.0, 1.0]], dtype=np.float32)), "TIFF"))
    assert floats[0, :, 0].tolist() == [0, 255]  # float samples: no fixed scale, their own range


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


def test_a_damaged_exif_block_decodes_without_a_warning():
    """Pillow's warning on a damaged EXIF block ('Corrupt EXIF data', 'Truncated File Read') reached predict's
    console without --verbose (hostile tester); the image itself decodes."""
    import warnings

    exif = Image.Exif()
    exif[0x0112], exif[0x010F] = 6, "camera maker"
    data = encode(Image.new("RGB", (30, 20), (200, 10, 10)), "JPEG", exif=exif.tobytes()[:-14])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning fails the test
        assert decode_rgb(data).shape == (20, 30, 3) and probe(data)["width"] == 30


@pytest.mark.parametrize("tag,kind,value", [(0x011A, 2, b"72\x00\x00"), (0x0128, 2, b"in\x00\x00"),
                                            (0x0213, 2, b"1\x00\x00\x00")])
def test_an_exif_tag_of_the_wrong_type_still_turns_the_image_upright(tag, kind, value):
    """A JPEG whose EXIF stores a numeric tag as text (XResolution "72", ResolutionUnit, YCbCrPositioning)
    beside an orientation crashed catalog, predict and evaluate with a traceback: Pillow's exif_transpose
    writes the block back and raised TypeError (hostile tester round 42). Pillow opens it."""
    import struct

    ifd = (b"MM\x00*" + struct.pack(">IH", 8, 2) + struct.pack(">HHIH2x", 0x0112, 3, 1, 6)
           + struct.pack(">HHI4s", tag, kind, len(value.rstrip(b"\x00")) + 1, value) + b"\x00" * 4)
    data = encode(Image.new("RGB", (48, 32), (10, 200, 10)), "JPEG", exif=b"Exif\x00\x00" + ifd)
    assert decode_rgb(data).shape == (48, 32, 3) and probe(data)["width"] == 32  # orientation 6: turned


def test_odd_sample_formats_and_key_colour_transparency():
    """A float TIFF with one NaN pixel decoded all black; a 32-bit integer TIFF of values 0..255 was scaled as
    16-bit (max 1); a PNG's tRNS key colour (L or RGB) was not put on white as other transparency is (tester)."""
    ramp = np.tile(np.arange(0, 256, 16, dtype=np.float32), (4, 1))  # 0..240 across, 4 rows
    with_nan = ramp.copy()
    with_nan[0, 0] = np.nan
    got = decode_rgb(encode(Image.fromarray(with_nan, mode="F"), "TIFF"))[..., 0]
    assert got[0, 0] == 0 and got[1, 0] == 0 and got[1, -1] == 255 and got[1, 8] == 136  # its range, NaN as 0
    wide = decode_rgb(encode(Image.fromarray(ramp.astype(np.int32), mode="I"), "TIFF"))[..., 0]
    assert wide.min() == 0 and wide.max() == 255  # 32-bit samples: their own range
    assert decode_rgb(encode(Image.new("L", (6, 6), 100), "PNG", transparency=100)).min() == 255
    deep = np.full((4, 4), 0x8080, np.uint16)  # at 16 bits: it decoded grey 128 (hostile tester round 66)
    deep[0, 0] = 0x1000
    got = decode_rgb(encode(Image.fromarray(deep), "PNG", transparency=0x8080))
    assert got[0, 0].tolist() == [16, 16, 16] and got[1, 1].tolist() == [255, 255, 255]
    key = Image.new("RGB", (6, 6), (1, 2, 3))
    key.putpixel((0, 0), (9, 9, 9))
    out = decode_rgb(encode(key, "PNG", transparency=(1, 2, 3)))
    assert out[0, 0].tolist() == [9, 9, 9] and out[1, 1].tolist() == [255, 255, 255]


def test_resize():
    assert decode_rgb(encode(Image.new("RGB", (50, 20)), "PNG"), size=16).shape == (16, 16, 3)


@pytest.mark.parametrize("data,reason", [
    (b"", "empty file"),
    (b"hello, this is a text file", "not an image"),
    (None, "^corrupt or truncated JPEG image: "),
    # formats said as such, not 'format not recognised' (round 66)
    (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"><circle r="4"/></svg>',
     r"^SVG drawing \(vector graphics\), not a raster image: convert it to PNG"),
    (b"\xff\x0a\xfa\x7f\x01\x90\x08", "^JPEG XL image, but this Pillow cannot decode JPEG XL$"),
    (b"\x00\x00\x00\x0cJXL \r\n\x87\n\x00\x00\x00\x14ftypjxl ", "^JPEG XL image, but this Pillow"),
])
def test_bad_files_raise_with_reason(data, reason):
    if data is None:
        data = encode(Image.effect_noise((64, 64), 50).convert("RGB"), "JPEG")[:400]
    with pytest.raises(DecodeError, match=reason):
        decode_rgb(data)


def test_decompression_bomb_is_refused(monkeypatch):
    import speciesfam.data.images as images

    monkeypatch.setattr(images, "MAX_PIXELS", 100)
    with pytest.raises(DecodeError, match=r"^decompression bomb: 400 px \(20x20\) > 100 px$"):
        decode_rgb(encode(Image.new("RGB", (20, 20)), "PNG"))


def test_an_eps_file_without_ghostscript_is_said_to_need_it_not_to_be_corrupt(monkeypatch):
    """Pillow reads EPS through Ghostscript: without it, an EPS file was 'corrupt or truncated' (round 48)."""
    from PIL import EpsImagePlugin

    monkeypatch.setattr(EpsImagePlugin, "gs_binary", False)  # Pillow's own 'not found', as on a machine without it
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nnewpath 0 0 moveto 10 10 lineto stroke\n%%EOF\n"
    with pytest.raises(DecodeError, match=r"^EPS image, but Pillow reads EPS with Ghostscript, which is not installed"):
        decode_rgb(eps)


def test_an_image_over_pillows_own_bomb_limit_is_refused_in_the_tools_words():
    """Over ~179 Mpx Pillow refuses the image itself, and its message named its limit, not MAX_PIXELS (round 48).
    A PNG header of 20000 x 20000 pixels (what Pillow checks before decoding), with no pixel data."""
    import struct
    import zlib

    from speciesfam.data.images import MAX_PIXELS

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 20000, 20000, 8, 0, 0, 0, 0)) + \
        chunk(b"IEND", b"")
    with pytest.raises(DecodeError, match=rf"^decompression bomb: 400000000 px > {MAX_PIXELS} px$"):
        decode_rgb(png)


def test_the_pixel_limit_is_max_pixels_not_pillows_warning():
    """Pillow warns from 89.5 Mpx and that warning was an error: a 95 Mpx image was a 'decompression bomb'
    below the tool's own 100 Mpx limit (hostile tester)."""
    from speciesfam.data.images import MAX_PIXELS, open_image

    img = open_image(encode(Image.new("L", (10_000, 9_500)), "PNG"))
    assert img.size == (10_000, 9_500) and 10_000 * 9_500 < MAX_PIXELS


@pytest.mark.parametrize("chunks", [[("zTXt", 1)], [("zTXt", 70)], [("iTXt", 1)], [("tEXt", 1), ("zTXt", 1)]])
def test_a_png_with_huge_text_metadata_reads_its_pixels(chunks):
    """A text chunk over Pillow's bomb limit (a 3 MB comment; 70 MB of them) made the image unreadable with
    Pillow's words ('Decompressed data too large for PngImagePlugin.MAX_TEXT_CHUNK'): metadata, not pixels."""
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    for kind, n in chunks:
        for i in range(n):
            text = "x" * (3 * 1024 * 1024 if n == 1 else 1_000_000)
            info.add_itxt(f"c{i}", text, zip=True) if kind == "iTXt" else info.add_text(f"c{i}", text,
                                                                                         zip=kind == "zTXt")
    img = Image.new("RGB", (12, 8), (10, 200, 30))
    img.putpixel((3, 2), (250, 0, 0))
    arr = decode_rgb(encode(img, "PNG", pnginfo=info))
    assert (arr == np.asarray(img)).all() and probe(encode(img, "PNG", pnginfo=info))["width"] == 12
    profiled = encode(img, "PNG", icc_profile=bytes(50_000_000))  # a colour profile too (round 68)
    assert (decode_rgb(profiled) == np.asarray(img)).all()
    with pytest.raises(DecodeError, match="corrupt or truncated PNG image"):  # damaged pixels are still said
        decode_rgb(encode(img, "PNG", pnginfo=info)[:-40])


def test_frames_are_counted_where_they_can_be_and_a_camera_mpo_is_one_image():
    """A multi-page TIFF whose page list is damaged crashed catalog (Pillow raised TypeError counting its pages:
    round 68): its first page is the image, its count unknown. A camera's MPO JPEG (photo and preview) is one."""
    pages = [Image.new("RGB", (16, 16), (80 * i, 30, 200)) for i in range(3)]
    whole = encode(pages[0], "TIFF", save_all=True, append_images=pages[1:], compression="tiff_deflate")
    assert probe(whole)["frames"] == 3
    cut = whole[:len(whole) * 2 // 3]
    assert probe(cut)["frames"] == 0 and (decode_rgb(cut) == np.asarray(pages[0])).all()
    mpo = encode(pages[0], "MPO", save_all=True, append_images=pages[1:2])
    assert Image.open(io.BytesIO(mpo)).n_frames == 2 and probe(mpo)["frames"] == 1
    gif = encode(pages[0], "GIF", save_all=True, append_images=pages[1:])
    assert probe(gif)["frames"] == 3
