from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from dogbreed import imaging
from tests.images import encode, exif_rotated_jpeg, jpeg_bytes, picture, png_bomb, variety


@pytest.mark.parametrize(
    "name",
    [
        "photo.jpg",
        "graphic.png",
        "grey.png",
        "alpha.png",
        "print.jpg",
        "rotated.jpg",
        "deep.png",
        "palette.gif",
        "phone.heic",
        "screen.webp",
    ],
)
def test_every_mode_preprocesses_to_a_normalised_rgb_array(tmp_path, name):
    data = variety(tmp_path)[name].read_bytes()
    x = imaging.preprocess(data, imaging.Preprocessing.for_crop(32))
    assert x.shape == (3, 32, 32) and x.dtype == np.float32
    assert np.abs(x).max() < 3 and x.flags["C_CONTIGUOUS"]


def test_exif_orientation_is_applied():
    upright = imaging.load_rgb(exif_rotated_jpeg(size=(60, 30), orientation=6))
    assert upright.size == (30, 60)


def test_sixteen_bit_grey_is_scaled_not_clipped():
    img = imaging.load_rgb(encode(Image.new("I;16", (8, 8), 32768), "PNG"))
    assert img.getpixel((0, 0)) == (127, 127, 127)


def test_transparency_goes_onto_white():
    img = imaging.load_rgb(encode(Image.new("RGBA", (4, 4), (255, 0, 0, 0)), "PNG"))
    assert img.getpixel((0, 0)) == (255, 255, 255)


def test_animated_images_use_the_first_frame():
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 0, 255))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    r, g, b = imaging.load_rgb(data).getpixel((0, 0))
    assert r > 200 and b < 50


def test_draft_decoding_keeps_enough_resolution():
    big = jpeg_bytes(size=(2000, 1500))
    img = imaging.load_rgb(big, min_side=256)
    assert min(img.size) >= 256 and img.size[0] < 2000


def test_numpy_preprocessing_equals_the_torch_arithmetic_it_replaced():
    """The same numbers as torch's float/div/sub/div on the same pixels (engines without torch rely on it)."""
    torch = pytest.importorskip("torch")
    data = encode(picture((90, 70), seed=3), "PNG")
    prep = imaging.Preprocessing(crop_size=48, resize_size=55, interpolation="bicubic")
    crop = imaging.center_crop(imaging.load_rgb(data, min_side=55), prep)
    t = torch.from_numpy(np.asarray(crop, dtype=np.uint8).copy()).permute(2, 0, 1).float().div_(255.0)
    t = t.sub_(torch.tensor(prep.mean).view(3, 1, 1)).div_(torch.tensor(prep.std).view(3, 1, 1))
    assert np.abs(imaging.preprocess(data, prep) - t.numpy()).max() < 1e-5


def test_interpolation_and_sizes_come_from_the_preprocessing_spec():
    data = encode(picture((300, 200), seed=4), "PNG")
    bilinear = imaging.preprocess(data, imaging.Preprocessing(64, 73, "bilinear"))
    bicubic = imaging.preprocess(data, imaging.Preprocessing(64, 73, "bicubic"))
    assert bilinear.shape == bicubic.shape == (3, 64, 64)
    assert np.abs(bilinear - bicubic).max() > 1e-3  # the interpolation really changes the pixels


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "empty"),
        (b"hello world", "not a recognised image"),
        (jpeg_bytes(size=(300, 200))[:700], "cannot decode"),
        (png_bomb(), r"^900,000,000 pixels is over the limit .*decompression bomb"),  # caught by Pillow
        (png_bomb(10_000, 10_000), r"^PNG of 10000x10000 is more than 64,000,000 pixels"),  # caught by us
    ],
)
def test_validate_refuses_bad_bytes(data, reason):
    with pytest.raises(imaging.ImageRejected, match=reason):
        imaging.validate(data)


def test_corrupt_exif_does_not_sink_a_good_picture():
    data = encode(picture((40, 30)), "JPEG", exif=b"Exif\x00\x00II*\x00\x08\x00\x00\x00\xff\xff garbage")
    imaging.validate(data)
    assert imaging.load_rgb(data).size == (40, 30)
    assert imaging.preprocess(data, imaging.Preprocessing.for_crop(32)).shape == (3, 32, 32)


def test_a_jpeg_cut_short_with_an_end_marker_is_refused_not_stored_grey():
    """libjpeg fills a scan cut by an end-of-image marker with grey and only warns; we refuse it."""
    rng = np.random.default_rng(0)
    full = encode(Image.fromarray((rng.random((300, 400, 3)) * 255).astype("uint8")), "JPEG", quality=90)
    imaging.validate(full)
    with pytest.raises(imaging.ImageRejected, match="truncated JPEG"):
        imaging.validate(full[: len(full) // 3] + b"\xff\xd9")
    flat = encode(Image.new("RGB", (64, 48), (128, 128, 128)), "JPEG")
    assert imaging.validate(flat).format == "JPEG"  # a genuinely grey picture is fine


def test_large_non_jpeg_pictures_are_reduced_while_decoding():
    img = imaging.load_rgb(encode(picture((2400, 1800), seed=5), "PNG"), min_side=256)
    assert 256 <= min(img.size) < 900
