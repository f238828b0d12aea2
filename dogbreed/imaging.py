"""Bytes -> a validated, upright RGB picture, and the ONE preprocessing shared by predict, evaluation and
training's evaluation pass.

Limits: a file over MAX_BYTES or a picture over MAX_PIXELS is refused before it is decoded, which stops
decompression bombs (a few KB of PNG that inflate to gigabytes) while any real photo passes: a 50-megapixel
phone picture is a quarter of the pixel limit.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

from PIL import Image, ImageFile, ImageOps

from dogbreed.errors import DogbreedError

if TYPE_CHECKING:
    import torch

MAX_BYTES = 100 * 1024 * 1024
MAX_PIXELS = 200_000_000

try:  # HEIC/HEIF: what iPhones save by default
    from pillow_heif import register_heif_opener

    register_heif_opener()
except ImportError:  # pragma: no cover - pillow-heif is a dependency; without it HEIC files are refused
    pass

# Our own explicit check below replaces Pillow's global bomb guard; keep Pillow's as a backstop above ours.
Image.MAX_IMAGE_PIXELS = MAX_PIXELS
ImageFile.LOAD_TRUNCATED_IMAGES = False

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RESIZE_RATIO = 256 / 224  # resize the shorter side to size * 256/224, then centre-crop size x size


class ImageRejected(DogbreedError):
    """Bytes that are not a usable picture; the message says why."""


@dataclass(frozen=True)
class ImageInfo:
    sha256: str
    format: str
    width: int
    height: int


def _open(data: bytes) -> Image.Image:
    if not data:
        raise ImageRejected("empty file")
    if len(data) > MAX_BYTES:
        raise ImageRejected(f"{len(data) / 2**20:.0f} MB is over the {MAX_BYTES // 2**20} MB limit")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # e.g. "Corrupt EXIF data": the pixels are what count
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageRejected(f"more than {MAX_PIXELS:,} pixels (decompression bomb?)") from None
    except Exception:
        raise ImageRejected("not a recognised image format") from None
    width, height = img.size
    if width * height > MAX_PIXELS:
        raise ImageRejected(f"{width}x{height} is more than {MAX_PIXELS:,} pixels (decompression bomb?)")
    if width < 1 or height < 1:
        raise ImageRejected(f"invalid size {width}x{height}")
    return img


def validate(data: bytes) -> ImageInfo:
    """Fully decode ``data`` (every byte of the pixel stream, not only the header) or raise ImageRejected.

    JPEGs decode through Pillow's draft mode at 1/8 scale: libjpeg still entropy-decodes every block, so
    truncation and corruption surface, at a fraction of a full-size decode's time and memory.
    """
    img = _open(data)
    fmt = img.format or "UNKNOWN"
    width, height = img.size
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # e.g. "Corrupt EXIF data": the pixels are what count
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            if fmt == "JPEG":
                img.draft(img.mode, (max(1, width // 8), max(1, height // 8)))
            img.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageRejected(f"more than {MAX_PIXELS:,} pixels (decompression bomb?)") from None
    except Exception as exc:
        reason = str(exc).split("\n")[0] or type(exc).__name__
        raise ImageRejected(f"cannot decode {fmt} data: {reason}") from None
    return ImageInfo(hashlib.sha256(data).hexdigest(), fmt, width, height)


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode to RGB; transparency goes onto white, 16-bit and float greys are scaled, not clipped."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        import numpy as np

        arr = np.asarray(img, dtype=np.float32)
        top = 65535.0 if img.mode.startswith("I;16") else max(float(arr.max()), 1.0)
        lo = 0.0 if img.mode != "F" else min(float(arr.min()), 0.0)
        arr = np.clip((arr - lo) / (top - lo) * 255.0, 0, 255).astype(np.uint8)
        return Image.fromarray(arr, mode="L").convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def _upright(img: Image.Image) -> Image.Image:
    """Apply the EXIF orientation; a malformed EXIF block leaves the picture as stored rather than failing it."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow warns about corrupt EXIF; the picture itself is fine
            return ImageOps.exif_transpose(img) or img
    except Exception:
        return img


def load_rgb(data: bytes, min_side: int | None = None) -> Image.Image:
    """Decode, apply the EXIF orientation and convert to RGB. With ``min_side``, JPEGs may decode at a reduced
    DCT scale as long as the shorter side stays at least ``min_side`` (much faster for large photos)."""
    img = _open(data)
    try:
        if min_side and img.format == "JPEG":
            w, h = img.size
            scale = min_side / min(w, h)
            if scale < 1:
                img.draft(img.mode, (max(1, int(w * scale)), max(1, int(h * scale))))
        img.seek(0)  # animated images: the first frame
        img.load()
        return _to_rgb(_upright(img))
    except ImageRejected:
        raise
    except Exception as exc:
        reason = str(exc).split("\n")[0] or type(exc).__name__
        raise ImageRejected(f"cannot decode image: {reason}") from None


def resize_size(image_size: int) -> int:
    return int(round(image_size * RESIZE_RATIO))


def center_crop(img: Image.Image, image_size: int) -> Image.Image:
    """Resize the shorter side to image_size*256/224 and centre-crop image_size x image_size, in one resampling
    pass over just the crop's source region (the same pixels as resize-then-crop, in about half the time)."""
    short = resize_size(image_size)
    w, h = img.size
    scale = short / min(w, h)
    new_w, new_h = max(short, round(w * scale)), max(short, round(h * scale))
    left, top = (new_w - image_size) // 2, (new_h - image_size) // 2
    sx, sy = w / new_w, h / new_h
    box = (left * sx, top * sy, (left + image_size) * sx, (top + image_size) * sy)
    return img.resize((image_size, image_size), Image.BILINEAR, box=box, reducing_gap=None)


def to_tensor(img: Image.Image, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """HWC uint8 RGB -> normalised CHW float32."""
    import numpy as np
    import torch

    arr = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).float().div_(255.0)
    mean_t = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    return arr.sub_(mean_t).div_(std_t)


def preprocess(
    data: bytes,
    image_size: int = 224,
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
) -> torch.Tensor:
    """Encoded image bytes -> the model's input tensor (3 x image_size x image_size)."""
    img = load_rgb(data, min_side=resize_size(image_size))
    return to_tensor(center_crop(img, image_size), mean, std)


def preprocess_pil(
    img: Image.Image,
    image_size: int = 224,
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
) -> torch.Tensor:
    """The same preprocessing for an already decoded RGB picture (training's evaluation pass)."""
    return to_tensor(center_crop(_to_rgb(img), image_size), mean, std)
