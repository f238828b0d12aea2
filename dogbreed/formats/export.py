"""What an exported model (ONNX, OpenVINO IR) carries about itself, so that ``predict --checkpoint EXPORTED`` needs
nothing else: its classes (WordNet ids, in output order), its preprocessing (resize, crop, interpolation,
normalisation), whether it has a dog output, its precision, and the model it was exported from (whose key names
the accuracy checks).

It travels as one JSON string: an ONNX ``metadata_props`` entry, an OpenVINO IR ``rt_info`` entry, both named
``dogbreed``. A file from elsewhere is untrusted: every field is type- and range-checked here, and breed names
always come from our own table, never from the file.

Light module: no torch, no OpenVINO.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from dogbreed.errors import DogbreedError
from dogbreed.formats.classes import check_classes, check_interpolation, check_size, check_stats
from dogbreed.imaging import Preprocessing

EXPORT_FORMAT = "dogbreed-export"
EXPORT_VERSION = 1
META_KEY = "dogbreed"
MAX_META_BYTES = 1 << 20
EXPORT_PRECISIONS = ("fp32", "int8")


@dataclass(frozen=True)
class ExportMeta:
    classes: list[list[str]]  # [[wnid, name], ...] in output order
    preprocessing: Preprocessing
    has_dog: bool
    precision: str  # fp32 or int8 (the weights in the file)
    source_key: str  # the key of the model this was exported from (checks are recorded against it)
    source_name: str
    run_id: int | None = None
    calibration: str | None = None  # int8: which images calibrated it
    versions: dict[str, str] = field(default_factory=dict)

    @property
    def wnids(self) -> tuple[str, ...]:
        return tuple(c[0] for c in self.classes)

    def to_json(self) -> str:
        data = asdict(self)
        data["preprocessing"] = self.preprocessing.to_dict()
        return json.dumps({"format": EXPORT_FORMAT, "version": EXPORT_VERSION, **data}, sort_keys=True)

    @classmethod
    def from_json(cls, text: Any, where: str) -> ExportMeta:
        """Parse and validate; ``where`` (the file) names the problem in the one-line error."""

        def bad(what: str) -> DogbreedError:
            return DogbreedError(f"{where} has an invalid dogbreed description: {what}; export it again")

        if not isinstance(text, str) or len(text) > MAX_META_BYTES:
            raise bad("it is not a short JSON text")
        try:
            raw = json.loads(text)
        except ValueError:
            raise bad("it is not JSON") from None
        if not isinstance(raw, dict) or raw.get("format") != EXPORT_FORMAT:
            raise bad("no dogbreed-export marker")
        version = raw.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or version > EXPORT_VERSION:
            raise DogbreedError(f"{where} was exported by a newer dogbreed; upgrade dogbreed")
        return cls(
            classes=check_classes(raw.get("classes"), bad),
            preprocessing=_preprocessing(raw.get("preprocessing"), bad),
            has_dog=_typed(raw.get("has_dog"), bool, "has_dog", bad),
            precision=_choice(raw.get("precision"), EXPORT_PRECISIONS, "precision", bad),
            source_key=_text(raw.get("source_key"), "source_key", bad, 200),
            source_name=_text(raw.get("source_name"), "source_name", bad, 500),
            run_id=_optional_int(raw.get("run_id"), "run_id", bad),
            calibration=_text(raw["calibration"], "calibration", bad, 2000) if raw.get("calibration") else None,
            versions={str(k)[:50]: str(v)[:50] for k, v in (raw.get("versions") or {}).items()}
            if isinstance(raw.get("versions"), dict)
            else {},
        )


def _typed(value: Any, kind: type, name: str, bad) -> Any:
    if not isinstance(value, kind):
        raise bad(f"{name!r} is missing or not a {kind.__name__}")
    return value


def _text(value: Any, name: str, bad, limit: int) -> str:
    if not isinstance(value, str) or not value or len(value) > limit:
        raise bad(f"{name!r} is missing or not a short text")
    return value


def _choice(value: Any, options: tuple[str, ...], name: str, bad) -> str:
    if value not in options:
        raise bad(f"{name!r} must be one of {', '.join(options)}")
    return value


def _optional_int(value: Any, name: str, bad) -> int | None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
        raise bad(f"{name!r} must be a whole number")
    return value


def _preprocessing(value: Any, bad) -> Preprocessing:
    if not isinstance(value, dict):
        raise bad("'preprocessing' is missing")
    crop = check_size(value.get("crop_size"), "crop_size", bad)
    resize = check_size(value.get("resize_size"), "resize_size", bad)
    interpolation = check_interpolation(value.get("interpolation"), bad)
    mean, std = check_stats(value["mean"], "mean", bad), check_stats(value["std"], "std", bad)
    return Preprocessing(crop, resize, interpolation, mean, std)
