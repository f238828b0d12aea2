from __future__ import annotations

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
def test_every_mode_preprocesses_to_a_normalised_rgb_tensor(tmp_path, name):
    data = variety(tmp_path)[name].read_bytes()
    x = imaging.preprocess(data, image_size=32)
    assert tuple(x.shape) == (3, 32, 32)
    assert x.dtype.is_floating_point and x.abs().max() < 3


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


def test_preprocess_matches_for_bytes_and_decoded_pictures():
    data = encode(picture((90, 70), seed=3), "PNG")
    a = imaging.preprocess(data, image_size=48)
    b = imaging.preprocess_pil(Image.open(__import__("io").BytesIO(data)), image_size=48)
    assert (a - b).abs().max() < 1e-6


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "empty"),
        (b"hello world", "not a recognised image"),
        (jpeg_bytes(size=(300, 200))[:700], "cannot decode"),
        (png_bomb(), "decompression bomb"),
    ],
)
def test_validate_refuses_bad_bytes(data, reason):
    with pytest.raises(imaging.ImageRejected, match=reason):
        imaging.validate(data)


def test_corrupt_exif_does_not_sink_a_good_picture():
    data = encode(picture((40, 30)), "JPEG", exif=b"Exif\x00\x00II*\x00\x08\x00\x00\x00\xff\xff garbage")
    imaging.validate(data)
    assert imaging.load_rgb(data).size == (40, 30)
    assert tuple(imaging.preprocess(data, image_size=32).shape) == (3, 32, 32)
