"""Pictures the tests make themselves: real formats and modes, and the broken files users really upload."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

from PIL import Image

import dogbreed.imaging  # noqa: F401  (registers the HEIF opener used below)


def picture(size=(64, 48), color=(200, 120, 40), mode="RGB", seed=0) -> Image.Image:
    """A picture with some structure (a gradient and a bar), so JPEG bytes differ with the seed."""
    w, h = size
    img = Image.new("RGB", size, color)
    px = img.load()
    for x in range(w):
        for y in range(0, h, max(1, h // 8)):
            px[x, y] = ((x * 7 + seed * 31) % 256, (y * 5 + seed * 17) % 256, (seed * 53) % 256)
    return img.convert(mode) if mode != "RGB" else img


def encode(img: Image.Image, fmt: str = "JPEG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def jpeg_bytes(size=(64, 48), color=(200, 120, 40), seed=0, quality=90) -> bytes:
    return encode(picture(size, color, seed=seed), "JPEG", quality=quality)


def exif_rotated_jpeg(size=(60, 30), orientation=6) -> bytes:
    """A landscape JPEG whose EXIF says 'rotate 90°': upright it is portrait."""
    img = picture(size)
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(img, "JPEG", exif=exif.tobytes())


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def png_bomb(width=30_000, height=30_000) -> bytes:
    """A tiny valid-looking PNG whose header claims width x height pixels (a decompression bomb)."""
    small = encode(Image.new("L", (1, 1)), "PNG")
    ihdr_start = 8
    length = struct.unpack(">I", small[ihdr_start : ihdr_start + 4])[0]
    body = bytearray(small[ihdr_start + 4 : ihdr_start + 8 + length])  # type + data
    body[4:12] = struct.pack(">II", width, height)
    crc = struct.pack(">I", zlib.crc32(bytes(body)) & 0xFFFFFFFF)
    return (
        small[:ihdr_start] + small[ihdr_start : ihdr_start + 4] + bytes(body) + crc + small[ihdr_start + 12 + length :]
    )


def variety(folder: Path) -> dict[str, Path]:
    """One file of each kind a real upload folder holds: good pictures in many modes, and broken ones."""
    good = {
        "photo.jpg": jpeg_bytes(seed=1),
        "graphic.png": encode(picture(seed=2), "PNG"),
        "grey.png": encode(picture(seed=3, mode="L"), "PNG"),
        "alpha.png": encode(picture(seed=4, mode="RGBA"), "PNG"),
        "print.jpg": encode(picture(seed=5, mode="CMYK"), "JPEG"),
        "rotated.jpg": exif_rotated_jpeg(),
        "deep.png": encode(Image.new("I;16", (40, 30), 40000), "PNG"),
        "palette.gif": encode(picture(seed=6).convert("P"), "GIF"),
        "phone.heic": encode(picture(seed=8), "HEIF"),
        "screen.webp": encode(picture(seed=9), "WEBP"),
    }
    full = jpeg_bytes(size=(320, 240), seed=7)
    bad = {
        "empty.jpg": b"",
        "notes.jpg": b"this is a text file, not a picture\n",
        "truncated.jpg": full[: len(full) // 2],
        "bomb.png": png_bomb(),
    }
    paths = {name: write(folder / name, data) for name, data in {**good, **bad}.items()}
    return paths
