"""Bytes -> a validated, upright RGB picture, and the ONE preprocessing (to a numpy array) that predict,
evaluation, export calibration and training's evaluation pass share.

Limits, so that no file can take unbounded time or memory:
- a file over MAX_BYTES is refused before it is decoded;
- a baseline JPEG may claim up to MAX_PIXELS: it is decoded at a reduced DCT scale (draft mode), so memory
  follows the size that is needed, not the size claimed;
- a progressive JPEG keeps every DCT coefficient of the whole picture while it decodes (2 bytes per sample at
  any scale), so it gets MAX_PIXELS_OTHER like other formats;
- other formats are decoded whole, and compress well enough to lie cheaply (a 786 KB PNG can claim
  14000x14000 RGBA = 784 MB), so they get the lower MAX_PIXELS_OTHER; once decoded they are reduced to the
  needed size before any conversion copies them.
A 50-megapixel phone JPEG and a 48-megapixel HEIC pass.
"""

from __future__ import annotations

import hashlib
import io
import re
import warnings
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from PIL import Image, ImageFile, ImageOps

from dogbreed.errors import DogbreedError

if TYPE_CHECKING:
    import numpy as np

MAX_BYTES = 100 * 1024 * 1024
MAX_PIXELS = 200_000_000
MAX_PIXELS_OTHER = 64_000_000

try:  # HEIC/HEIF: what iPhones save by default
    from pillow_heif import register_heif_opener

    register_heif_opener()
except ImportError:  # pragma: no cover - pillow-heif is a dependency; without it HEIC files are refused
    pass

# Our explicit checks replace Pillow's global bomb guard; keep Pillow's as a backstop above ours.
Image.MAX_IMAGE_PIXELS = MAX_PIXELS
ImageFile.LOAD_TRUNCATED_IMAGES = False

# Picture files by extension, where folders are scanned (upload, the dataset); a file named explicitly is judged
# by its content.
IMAGE_SUFFIXES = frozenset(
    {
        ".jpg",
        ".jpeg",
        ".jfif",
        ".png",
        ".gif",
        ".bmp",
        ".webp",
        ".tif",
        ".tiff",
        ".heic",
        ".heif",
        ".avif",
        ".ppm",
        ".pgm",
    }
)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INTERPOLATIONS = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}


class ImageRejected(DogbreedError):
    """Bytes that are not a usable picture; the message says why."""


@dataclass(frozen=True)
class Preprocessing:
    """How a model wants its input: shorter side resized to ``resize_size``, centre crop ``crop_size`` square,
    ``interpolation``, then normalised with ``mean``/``std``. Recorded in checkpoints and exports; taken from
    torchvision's weights (``weights.transforms()``) for ready models."""

    crop_size: int = 224
    resize_size: int = 256
    interpolation: str = "bilinear"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))

    @classmethod
    def for_crop(cls, crop_size: int, **kw) -> Preprocessing:
        """The classic ImageNet recipe at another size: resize to crop * 256/224, then crop."""
        return cls(crop_size=crop_size, resize_size=int(round(crop_size * 256 / 224)), **kw)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["mean"], data["std"] = list(self.mean), list(self.std)
        return data


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
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageRejected(_bomb(exc)) from None
    except Exception:
        raise ImageRejected("not a recognised image format") from None
    width, height = img.size
    if width < 1 or height < 1:
        raise ImageRejected(f"invalid size {width}x{height}")
    progressive = bool(img.info.get("progressive") or img.info.get("progression"))
    limit = MAX_PIXELS if img.format == "JPEG" and not progressive else MAX_PIXELS_OTHER
    if width * height > limit:
        kind = f"progressive {img.format}" if progressive else img.format or "image"
        raise ImageRejected(f"{kind} of {width}x{height} is more than {limit:,} pixels (decompression bomb?)")
    return img


def _bomb(exc: Exception) -> str:
    """Pillow's own bomb check fired (it reads the size before we can): say how big, against which limit."""
    found = re.search(r"\((\d+) pixels\)", str(exc))
    size = f"{int(found.group(1)):,} pixels" if found else f"more than {MAX_PIXELS:,} pixels"
    return (
        f"{size} is over the limit ({MAX_PIXELS:,} for baseline JPEG, {MAX_PIXELS_OTHER:,} for other formats; "
        "decompression bomb?)"
    )


def _load(img: Image.Image, fmt: str) -> None:
    """Decode the pixel stream; a truncated or corrupt one is an ImageRejected with the decoder's reason."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img.seek(0)  # animated images: the first frame
            img.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageRejected(_bomb(exc)) from None
    except Exception as exc:
        reason = str(exc).split("\n")[0] or type(exc).__name__
        raise ImageRejected(f"cannot decode {fmt} data: {reason}") from None


def _missing_jpeg_tail(img: Image.Image) -> bool:
    """True when a baseline JPEG's scan ended early and libjpeg filled the rest with mid-grey.

    libjpeg treats a scan cut short by an end-of-image marker as a warning (Pillow does not report it) and
    decodes the missing blocks with no coefficients: exactly 128 in every channel. A real photo's last row of
    blocks is never exactly that flat grey while the first row is not. (A cut inside the last row of blocks goes
    unnoticed: it loses at most 16 pixel rows.)"""
    if img.info.get("progressive") or img.info.get("progression"):
        return False  # earlier scans cover the whole picture: a cut shows as blur, not grey
    w, h = img.size
    grey = [(128, 128)] * len(img.getbands())

    def flat_grey(box: tuple[int, int, int, int]) -> bool:
        extrema = img.crop(box).getextrema()
        extrema = [extrema] if isinstance(extrema[0], int) else list(extrema)
        return extrema == grey

    return h > 1 and flat_grey((0, h - 1, w, h)) and not flat_grey((0, 0, w, 1))


def validate(data: bytes) -> ImageInfo:
    """Fully decode ``data`` (every byte of the pixel stream, not only the header) or raise ImageRejected.

    JPEGs decode through draft mode at 1/8 scale: libjpeg still entropy-decodes every block, so truncation and
    corruption surface, at a fraction of a full-size decode's time and memory.
    """
    img = _open(data)
    fmt = img.format or "UNKNOWN"
    width, height = img.size
    upright = (height, width) if _orientation(img) in _QUARTER_TURNS else (width, height)
    if fmt == "JPEG":
        img.draft(img.mode, (max(1, width // 8), max(1, height // 8)))
    _load(img, fmt)
    if fmt == "JPEG" and _missing_jpeg_tail(img):
        raise ImageRejected("truncated JPEG: the end of its picture data is missing (the bottom would be grey)")
    return ImageInfo(hashlib.sha256(data).hexdigest(), fmt, *upright)  # the size it is shown (and predicted) at


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
        rgba = img if img.mode == "RGBA" else img.convert("RGBA")  # no copy of a (possibly huge) RGBA picture
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


_QUARTER_TURNS = (5, 6, 7, 8)  # EXIF orientations that show the picture rotated by 90 degrees: width <-> height


def _orientation(img: Image.Image) -> int:
    """The EXIF orientation tag (1: as stored); a malformed EXIF block counts as 1, as ``_upright`` treats it."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow warns about corrupt EXIF; the picture itself is fine
            value = img.getexif().get(0x0112, 1)
        return value if isinstance(value, int) and 1 <= value <= 8 else 1
    except Exception:
        return 1


def _upright(img: Image.Image) -> Image.Image:
    """Apply the EXIF orientation; a malformed EXIF block leaves the picture as stored rather than failing it."""
    if _orientation(img) == 1:
        return img  # already upright: no copy
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return ImageOps.exif_transpose(img) or img
    except Exception:
        return img


def load_rgb(data: bytes, min_side: int | None = None) -> Image.Image:
    """Decode, apply the EXIF orientation and convert to RGB. With ``min_side``, the picture comes back no smaller
    than needed for a shorter side of ``min_side`` and not much larger: JPEGs decode at a reduced DCT scale, other
    formats are box-reduced right after decoding, before any conversion copies them."""
    img = _open(data)
    fmt = img.format or "UNKNOWN"
    if min_side and fmt == "JPEG":
        w, h = img.size
        scale = min_side / min(w, h)
        if scale < 1:
            img.draft(img.mode, (max(1, int(w * scale)), max(1, int(h * scale))))
    _load(img, fmt)
    if min_side and fmt != "JPEG":
        factor = min(img.size) // (2 * min_side)
        if factor >= 2:
            try:
                img = img.reduce(factor)
            except (ValueError, NotImplementedError):  # modes reduce() does not handle: convert first
                img = _to_rgb(img).reduce(factor)
    try:
        return _to_rgb(_upright(img))
    except Exception as exc:
        reason = str(exc).split("\n")[0] or type(exc).__name__
        raise ImageRejected(f"cannot decode image: {reason}") from None


def center_crop(img: Image.Image, prep: Preprocessing) -> Image.Image:
    """Resize the shorter side to ``prep.resize_size`` and centre-crop ``prep.crop_size`` square, in one
    resampling pass over just the crop's source region (the same pixels as resize-then-crop, in about half the
    time)."""
    short, size = prep.resize_size, prep.crop_size
    w, h = img.size
    scale = short / min(w, h)
    new_w, new_h = max(short, round(w * scale)), max(short, round(h * scale))
    left, top = (new_w - size) // 2, (new_h - size) // 2
    sx, sy = w / new_w, h / new_h
    box = (left * sx, top * sy, (left + size) * sx, (top + size) * sy)
    resample = INTERPOLATIONS.get(prep.interpolation, Image.BILINEAR)
    return img.resize((size, size), resample, box=box, reducing_gap=None)


def normalise(img: Image.Image, prep: Preprocessing) -> np.ndarray:
    """HWC uint8 RGB -> normalised CHW float32: (x / 255 - mean) / std as one multiply-add per value, written
    channel by channel into the CHW array (4x faster than arithmetic on the HWC array then a transposed copy; the
    same numbers as the torch arithmetic it replaced to 1e-6)."""
    import numpy as np

    pixels = np.asarray(img, dtype=np.uint8)
    std = np.asarray(prep.std, dtype=np.float64)
    scale = (1.0 / (255.0 * std)).astype(np.float32)
    shift = (-np.asarray(prep.mean, dtype=np.float64) / std).astype(np.float32)
    out = np.empty((3, *pixels.shape[:2]), dtype=np.float32)
    for c in range(3):
        np.multiply(pixels[:, :, c], scale[c], out=out[c], dtype=np.float32)
        out[c] += shift[c]
    return out


def preprocess(data: bytes, prep: Preprocessing) -> np.ndarray:
    """Encoded image bytes -> the model's input array (3 x crop x crop, float32)."""
    img = load_rgb(data, min_side=prep.resize_size)
    return normalise(center_crop(img, prep), prep)
