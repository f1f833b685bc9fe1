"""A radiograph as a viewer shows it, at full resolution, for a reader to window, zoom and
pan: the reader study's reading page (not the model's input, which is resized to the
model's budget).

The display chain is ``conversion``'s: Modality LUT, then a VOI window (the one asked
for, else the image's first window and its function, else a 0.5-99.5 percentile
window), MONOCHROME1 and an INVERSE Presentation LUT Shape shown inverted once, padding
black.  Decoding is the costly step, so a ``DisplaySource`` keeps the modality values and
each new window is one vectorised pass over them and a fast PNG encode.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pydicom import dcmread
from pydicom.pixels import apply_modality_lut

from dicom_gateway.imaging.conversion import (
    DEFAULT_MAX_SOURCE_PIXELS,
    ConversionError,
    apply_window,
    check_source,
    decode,
    first_value,
    luminance,
    padding_mask,
)


@dataclass(frozen=True)
class DisplaySource:
    """Decoded values ready to window; ``center``/``width``/``function``: the default view;
    ``low``/``high``: the range of values, which bounds a window a viewer may ask for."""

    values: np.ndarray
    mask: np.ndarray | None
    invert: bool
    center: float
    width: float
    function: str
    low: float
    high: float

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return int(self.values.shape[1]), int(self.values.shape[0])

    def describe(self) -> dict[str, Any]:
        """What a viewer needs to draw its controls."""
        width, height = self.size
        return {"width": width, "height": height, "center": self.center,
                "window": self.width, "low": self.low, "high": self.high,
                "function": self.function, "inverted": self.invert}


def _default_window(ds: Any, values: np.ndarray, mask: np.ndarray | None
                    ) -> tuple[float, float, str]:
    if "WindowCenter" in ds and "WindowWidth" in ds and "VOILUTSequence" not in ds:
        return (float(first_value(ds.WindowCenter)), float(first_value(ds.WindowWidth)),
                str(ds.get("VOILUTFunction", "LINEAR")).upper() or "LINEAR")
    valid = values if mask is None else values[mask]
    lo, hi = (float(v) for v in np.percentile(valid, [0.5, 99.5]))
    return (lo + hi) / 2, max(hi - lo, 1.0), "LINEAR"


def dicom_source(ds: Any, max_source_pixels: int = DEFAULT_MAX_SOURCE_PIXELS
                 ) -> DisplaySource:
    """A radiograph's first frame, decoded once; ConversionError says why it cannot be."""
    check_source(ds, max_source_pixels)
    stored = decode(ds)
    if stored.ndim == 3:  # colour: its luminance, shown as it is
        return picture_source(np.clip(luminance(stored.astype(np.float64)), 0, 255))
    mask = padding_mask(ds, stored)
    values = np.asarray(apply_modality_lut(stored, ds), dtype=np.float32)
    center, width, function = _default_window(ds, values, mask)
    photometric = str(ds.PhotometricInterpretation).upper()
    invert = (photometric == "MONOCHROME1") != (
        str(ds.get("PresentationLUTShape", "")).upper() == "INVERSE")
    valid = values if mask is None else values[mask]
    return DisplaySource(values, mask, invert, center, width, function,
                         float(valid.min()), float(valid.max()))


def dicom_file_source(path: Path, max_source_pixels: int = DEFAULT_MAX_SOURCE_PIXELS
                      ) -> DisplaySource:
    return dicom_source(dcmread(path), max_source_pixels)


def picture_source(gray: np.ndarray) -> DisplaySource:
    """An 8-bit picture (a batch's PNG or JPEG source): values 0..255, the identity
    window by default."""
    values = np.asarray(gray, dtype=np.float32)
    return DisplaySource(values, None, False, 127.5, 256.0, "LINEAR", 0.0, 255.0)


def render_png(source: DisplaySource, center: float | None = None,
               width: float | None = None) -> bytes:
    """The image under a window (the source's own when none is given), as an 8-bit grey
    PNG at full resolution."""
    function = source.function if center is None and width is None else "LINEAR"
    c = source.center if center is None else float(center)
    w = source.width if width is None else float(width)
    if not (np.isfinite(c) and np.isfinite(w)) or w < 1:
        raise ConversionError("a window needs a finite center and a width of at least 1")
    gray = apply_window(source.values, c, w, function) * 255.0
    if source.invert:
        gray = 255.0 - gray
    out = np.round(gray).astype(np.uint8)
    if source.mask is not None:
        out[~source.mask] = 0
    buf = io.BytesIO()
    Image.fromarray(out, mode="L").save(buf, format="PNG", compress_level=1)
    return buf.getvalue()
