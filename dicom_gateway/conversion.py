"""Pixels to a model-ready image.

The model was trained on MIMIC-CXR-JPG (stored values min-max scaled to 8 bits,
MONOCHROME1 inverted, histogram-equalised) resized by the Qwen2.5-VL processor to at
most 476*476 pixels.  Reproducing that here, rather than a viewer's window, keeps
our inputs close to the training distribution.  All functions are pure.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pydicom import dcmread

CONVERSION_NAME = "mimic-v1"
PATCH_GRID = 28
MIN_PIXELS = 128 * 128
MAX_PIXELS = 476 * 476


class ConversionError(ValueError):
    """The image cannot be turned into model input; the message says why."""


@dataclass(frozen=True)
class ModelImage:
    """An 8-bit RGB PNG ready for the processor, and how it was made."""

    png: bytes
    width: int
    height: int
    conversion: str
    notes: tuple[str, ...] = ()


def smart_resize(height: int, width: int, factor: int = PATCH_GRID,
                 min_pixels: int = MIN_PIXELS, max_pixels: int = MAX_PIXELS) -> tuple[int, int]:
    """Qwen2.5-VL's resize rule: sides on the patch grid, area within the pixel budget."""
    if min(height, width) <= 0:
        raise ConversionError(f"image has no area ({width}x{height})")
    h = max(factor, round(height / factor) * factor)
    w = max(factor, round(width / factor) * factor)
    if h * w > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h = max(factor, math.floor(height / beta / factor) * factor)
        w = max(factor, math.floor(width / beta / factor) * factor)
    elif h * w < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h = math.ceil(height * beta / factor) * factor
        w = math.ceil(width * beta / factor) * factor
    return h, w


def min_max_uint8(pixels: np.ndarray) -> np.ndarray:
    """MIMIC-CXR-JPG scaling: subtract the minimum, divide by the new maximum, truncate."""
    x = pixels.astype(np.float64)
    x -= x.min()
    top = x.max()
    if top > 0:
        x = x / top * 255.0
    return np.trunc(x).astype(np.uint8)


def equalize_hist(img: np.ndarray) -> np.ndarray:
    """OpenCV ``equalizeHist`` for uint8 images, in numpy (no OpenCV dependency)."""
    hist = np.bincount(img.ravel(), minlength=256)
    cdf = hist.cumsum()
    nonzero = cdf[cdf > 0]
    cdf_min = int(nonzero[0]) if nonzero.size else 0
    total = int(cdf[-1])
    if total == cdf_min:
        return img.copy()
    lut = np.clip(np.round((cdf - cdf_min) * 255.0 / (total - cdf_min)), 0, 255)
    return lut.astype(np.uint8)[img]


def to_png(gray: np.ndarray) -> tuple[bytes, int, int]:
    """Resize a uint8 grey image to the model's budget and encode it as RGB PNG."""
    h, w = smart_resize(*gray.shape)
    image = Image.fromarray(gray, mode="L").resize((w, h), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="PNG")
    return buf.getvalue(), w, h


def convert_dataset(ds: Any) -> ModelImage:
    """Decode one radiograph and apply the MIMIC-style conversion."""
    notes: list[str] = []
    photometric = str(ds.get("PhotometricInterpretation", "")).upper()
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise ConversionError(f"unsupported PhotometricInterpretation {photometric or 'missing'}")
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        notes.append("multi-frame: first frame used")
    try:
        pixels = ds.pixel_array
    except Exception as exc:  # decoder missing or corrupt data
        ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "unknown")
        raise ConversionError(f"cannot decode pixel data (transfer syntax {ts}): {exc}") from exc
    if pixels.ndim == 3:
        pixels = pixels[0]
    gray = min_max_uint8(pixels)
    if photometric == "MONOCHROME1":
        gray = 255 - gray
    gray = equalize_hist(gray)
    png, w, h = to_png(gray)
    return ModelImage(png=png, width=w, height=h, conversion=CONVERSION_NAME, notes=tuple(notes))


def convert_file(path: Path) -> ModelImage:
    return convert_dataset(dcmread(path))
