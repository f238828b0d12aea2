"""The size stored for a picture is the size it is shown and predicted at: upright, after its EXIF orientation
(issue 22: a photo shown 90x120 was stored as 120x90)."""

from __future__ import annotations

import pytest
from PIL import Image

from dogbreed import imaging
from tests.images import encode, picture, write


def oriented(fmt: str, orientation: int, size=(120, 90)) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(picture(size), fmt, exif=exif.tobytes())


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_the_stored_size_is_the_upright_one(cli, tmp_path, fmt, orientation):
    data = oriented(fmt, orientation)
    shown = imaging.load_rgb(data).size  # what predict and view see
    assert shown == ((90, 120) if orientation >= 5 else (120, 90))
    stored = cli.json("upload", write(tmp_path / f"photo.{fmt.lower()}", data))["results"][0]
    assert (stored["width"], stored["height"]) == shown
    again = cli.json("show", stored["image_id"])
    image = again.get("image", again)
    assert (image["width"], image["height"]) == shown


def test_a_malformed_or_out_of_range_orientation_counts_as_upright(tmp_path):
    """As decoding treats it: the picture as stored, never a failure."""
    for value in (0, 9, 65535):
        info = imaging.validate(oriented("JPEG", value))
        assert (info.width, info.height) == (120, 90) == imaging.load_rgb(oriented("JPEG", value)).size
