"""Pixels to a model-ready image.

Two conversions:

* ``mimic`` (default): what MIMIC-CXR-JPG did to the model's training images. Stored
  values (pydicom 3 masks bits above BitsStored) min-max scaled to 8 bits and
  truncated, MONOCHROME1 inverted once, histogram-equalised, RGB.  The inversion is
  done on the values (``min + max - x``) before truncation rather than on the 8-bit
  result, so MONOCHROME1 and MONOCHROME2 encodings of one image give identical input
  (MIMIC's order differs from this by at most one grey level before equalisation).  Padding pixels
  (PixelPaddingValue and its range) are left out of every statistic and shown black.
  No window: the training data never saw one.
* ``window``: what a viewer shows. Modality LUT, VOI LUT (first window, LINEAR,
  LINEAR_EXACT or SIGMOID, or the VOI LUT sequence), Presentation LUT Shape, with a
  0.5-99.5 percentile window when the image has none.

Both end in the Qwen2.5-VL resize rule (sides on the 28-pixel grid, area between
128*128 and 476*476).  For integer pixels the whole ``mimic`` chain is one lookup
table built from the histogram, so converting costs little more than decoding.
"""

from __future__ import annotations

import io
import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pydicom import dcmread
from pydicom.encaps import get_frame
from pydicom.multival import MultiValue
from pydicom.pixels import apply_modality_lut, apply_voi_lut, get_decoder
from pydicom.pixels import pixel_array as decode_frame

from dicom_gateway.imaging.names import CONVERSION_VERSIONS, CONVERSIONS, MIMIC

PATCH_GRID = 28
MIN_PIXELS = 128 * 128
MAX_PIXELS = 476 * 476
DEFAULT_MAX_SOURCE_PIXELS = 64 * 1024 * 1024
GREY = ("MONOCHROME1", "MONOCHROME2")
RLE_LOSSLESS = "1.2.840.10008.1.2.5"
COLOUR = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_RCT", "YBR_ICT", "YBR_PARTIAL_420")


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


def min_max_uint8(pixels: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """MIMIC-CXR-JPG scaling: subtract the minimum, divide by the new maximum, truncate.

    ``mask`` marks the pixels that count for the statistics (padding excluded).
    """
    x = pixels.astype(np.float64)
    valid = x if mask is None else x[mask]
    if valid.size == 0:
        raise ConversionError("image has only padding pixels")
    lo, hi = float(valid.min()), float(valid.max())
    top = hi - lo
    x = np.clip(x - lo, 0, top)
    if top > 0:
        x = x / top * 255.0
    return np.trunc(x).astype(np.uint8)


def equalization_lut(hist: np.ndarray) -> np.ndarray:
    """OpenCV ``equalizeHist``'s table for a 256-bin histogram."""
    cdf = hist.cumsum()
    nonzero = cdf[cdf > 0]
    cdf_min = int(nonzero[0]) if nonzero.size else 0
    total = int(cdf[-1])
    if total == cdf_min:
        return np.arange(256, dtype=np.uint8)
    lut = np.clip(np.round((cdf - cdf_min) * 255.0 / (total - cdf_min)), 0, 255)
    return lut.astype(np.uint8)


def equalize_hist(img: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """OpenCV ``equalizeHist`` for uint8 images (statistics over ``mask`` when given)."""
    values = img if mask is None else img[mask]
    return equalization_lut(np.bincount(values.ravel(), minlength=256))[img]


def to_png(gray: np.ndarray) -> tuple[bytes, int, int]:
    """Resize a uint8 grey image to the model's budget and encode it as RGB PNG."""
    h, w = smart_resize(*gray.shape)
    image = Image.fromarray(gray, mode="L").resize((w, h), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="PNG", compress_level=1)
    return buf.getvalue(), w, h


def padding_mask(ds: Any, stored: np.ndarray) -> np.ndarray | None:
    """True where a pixel is image (not padding); None when the image declares no padding."""
    if "PixelPaddingValue" not in ds:
        return None
    a = int(ds.PixelPaddingValue)
    b = int(ds.get("PixelPaddingRangeLimit", a))
    lo, hi = min(a, b), max(a, b)
    mask = ~((stored >= lo) & (stored <= hi))
    if not mask.any():
        raise ConversionError("image has only padding pixels")
    return mask


def check_source(ds: Any, max_source_pixels: int) -> list[str]:
    """What must hold before decoding (pixel data present, size under the decompression
    guard, a layout we decode); notes on what will be left out (later frames)."""
    notes = []
    if "PixelData" not in ds:
        if "FloatPixelData" in ds or "DoubleFloatPixelData" in ds:
            raise ConversionError("float pixel data is not supported for radiographs")
        raise ConversionError("no pixel data")
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if rows * cols == 0:
        raise ConversionError("Rows or Columns missing or zero")
    if rows * cols > max_source_pixels:
        raise ConversionError(
            f"{cols}x{rows} pixels exceeds the limit of {max_source_pixels} (decompression guard)"
        )
    _codestream_guard(ds, rows, cols, frames)
    if frames > 1:
        notes.append(f"multi-frame ({frames}): first frame used")
    bits = int(ds.get("BitsAllocated", 0) or 0)
    if bits not in (8, 16, 32):
        raise ConversionError(f"unsupported BitsAllocated {bits}")
    if int(ds.get("PixelRepresentation", 0) or 0) not in (0, 1):
        raise ConversionError("PixelRepresentation must be 0 or 1")
    photometric = str(ds.get("PhotometricInterpretation", "")).upper()
    if photometric not in GREY + COLOUR:
        raise ConversionError(f"unsupported PhotometricInterpretation {photometric or 'missing'}")
    return notes


_SOF = {*range(0xC0, 0xD0)} - {0xC4, 0xC8, 0xCC} | {0xF7}  # JPEG SOFn and JPEG-LS SOF55


def codestream_size(frame: bytes) -> tuple[int, int] | None:
    """(rows, columns) that a JPEG, JPEG-LS or JPEG 2000 codestream declares, or None.

    Read before decoding: a decoder allocates what the codestream says, whatever the
    DICOM header claims, so a 60000 x 60000 stream under a 64 x 64 header is a memory
    bomb unless the two are compared first.
    """
    if frame[:4] == b"\xff\x4f\xff\x51" and len(frame) >= 24:  # J2K: SOC, then SIZ
        xsiz, ysiz, xosiz, yosiz = struct.unpack(">IIII", frame[8:24])
        return ysiz - yosiz, xsiz - xosiz
    box = frame.find(b"ihdr")  # JP2 file format: the image header box
    if frame[4:8] == b"jP  " and box > 0 and len(frame) >= box + 12:
        height, width = struct.unpack(">II", frame[box + 4:box + 12])
        return height, width
    if frame[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 9 <= len(frame):
        if frame[i] != 0xFF:
            i += 1
            continue
        marker = frame[i + 1]
        if marker in _SOF:
            height, width = struct.unpack(">HH", frame[i + 5:i + 9])
            return height, width
        if marker == 0xFF or marker == 0x01 or 0xD0 <= marker <= 0xD8:
            i += 2 if marker != 0xFF else 1
            continue
        i += 2 + struct.unpack(">H", frame[i + 2:i + 4])[0]
    return None


def _codestream_guard(ds: Any, rows: int, cols: int, frames: int) -> None:
    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if ts is None or not ts.is_encapsulated or str(ts) == RLE_LOSSLESS:
        return
    try:
        first = get_frame(ds.PixelData, 0, number_of_frames=frames)
    except Exception as exc:  # noqa: BLE001 - unreadable items: say so, do not decode
        raise ConversionError(f"encapsulated pixel data ({ts.name}) cannot be read: {exc}") \
            from exc
    size = codestream_size(bytes(first))
    if size is not None and size != (rows, cols):
        raise ConversionError(
            f"the compressed image is {size[1]}x{size[0]} but the header says {cols}x{rows}; "
            "refused before decoding (decompression guard)")


def decode(ds: Any) -> np.ndarray:
    """The first frame's stored values (colour converted to RGB), naming the syntax on error."""
    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    try:
        return np.asarray(decode_frame(ds, index=0))
    except Exception as exc:  # a missing plugin or corrupt data
        name = getattr(ts, "name", None) or str(ts or "unknown")
        raise ConversionError(f"cannot decode pixel data ({name}): {_why_not(ts, exc)}") \
            from exc


def _why_not(ts: Any, exc: Exception) -> str:
    """Corrupt data, or a decoder missing here: the remedy differs, so say which."""
    try:
        decoder = get_decoder(ts)
    except Exception:  # noqa: BLE001 - a transfer syntax pydicom does not know at all
        return f"{exc} (no decoder exists for this transfer syntax)"
    if decoder.is_available:
        return f"the data is corrupt or inconsistent with its header: {exc}"
    return (f"{exc}; no decoder is installed for it (install pylibjpeg with its openjpeg, "
            "libjpeg and rle plugins)")


def luminance(rgb: np.ndarray) -> np.ndarray:
    return (rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114)


def mimic_gray(ds: Any, stored: np.ndarray, notes: list[str]) -> np.ndarray:
    """The MIMIC-CXR-JPG steps, as one lookup table when the pixels are integers."""
    photometric = str(ds.PhotometricInterpretation).upper()
    # Padding is declared in stored values: find it before any rescale changes them.
    mask = padding_mask(ds, stored) if stored.ndim == 2 else None
    if stored.ndim == 3:
        notes.append(f"{photometric} input converted to luminance")
        stored = luminance(stored.astype(np.float64))
    slope = float(ds.get("RescaleSlope", 1) or 1)
    if slope < 0:
        notes.append("negative RescaleSlope: polarity taken from the Modality LUT")
        stored = -stored.astype(np.float64)
    elif "ModalityLUTSequence" in ds:
        notes.append("Modality LUT Sequence applied before scaling")
        stored = np.asarray(apply_modality_lut(stored, ds))
    invert = photometric == "MONOCHROME1"
    if np.issubdtype(stored.dtype, np.integer) and stored.dtype.itemsize <= 2:
        return _mimic_by_lut(stored, mask, invert)
    if invert:
        valid = stored if mask is None else stored[mask]
        stored = (float(valid.min()) + float(valid.max())) - stored.astype(np.float64)
    gray = min_max_uint8(stored, mask)
    gray = equalize_hist(gray, mask)
    if mask is not None:
        gray[~mask] = 0
    return gray


def _mimic_by_lut(stored: np.ndarray, mask: np.ndarray | None, invert: bool) -> np.ndarray:
    offset = 32768 if stored.dtype.kind == "i" else 0
    index = (stored.astype(np.int32) + offset) if offset else stored
    hist = np.bincount(index.ravel(), minlength=256)
    counted = hist.copy()
    if mask is not None:
        counted = np.bincount(index[mask].ravel(), minlength=hist.size)
        counted = np.pad(counted, (0, max(0, hist.size - counted.size)))
    present = np.nonzero(counted)[0]
    if present.size == 0:
        raise ConversionError("image has only padding pixels")
    values = np.arange(hist.size, dtype=np.float64)
    lo, hi = float(present[0]), float(present[-1])
    scaled = np.clip((hi - values) if invert else (values - lo), 0, hi - lo)
    if hi > lo:
        scaled = scaled / (hi - lo) * 255.0
    to8 = np.trunc(scaled).astype(np.uint8)
    hist8 = np.bincount(to8, weights=counted[: to8.size], minlength=256).astype(np.int64)
    lut = equalization_lut(hist8)[to8]
    if mask is not None:
        pad_values = np.nonzero(hist[: lut.size] - counted[: lut.size])[0]
        lut[pad_values] = 0
    return lut[index]


def window_gray(ds: Any, stored: np.ndarray, notes: list[str]) -> np.ndarray:
    """The display chain: Modality LUT, VOI LUT, Presentation LUT Shape, MONOCHROME1."""
    photometric = str(ds.PhotometricInterpretation).upper()
    if stored.ndim == 3:
        notes.append(f"{photometric} input converted to luminance")
        return np.clip(luminance(stored.astype(np.float64)), 0, 255).astype(np.uint8)
    mask = padding_mask(ds, stored)
    values = np.asarray(apply_modality_lut(stored, ds), dtype=np.float64)
    if "VOILUTSequence" in ds:
        out = np.asarray(apply_voi_lut(np.rint(values).astype(np.int64), ds, index=0,
                                       prefer_lut=True), dtype=np.float64)
        lut_data = np.asarray(ds.VOILUTSequence[0].LUTData, dtype=np.float64)
        lo, hi = float(lut_data.min()), float(lut_data.max())
        unit = np.clip((out - lo) / (hi - lo if hi > lo else 1.0), 0.0, 1.0)
    elif "WindowCenter" in ds and "WindowWidth" in ds:
        center = float(first_value(ds.WindowCenter))
        width = float(first_value(ds.WindowWidth))
        unit = apply_window(values, center, width, str(ds.get("VOILUTFunction", "LINEAR")))
    else:
        notes.append("no VOI window: 0.5-99.5 percentile window used")
        valid = values if mask is None else values[mask]
        lo, hi = (float(v) for v in np.percentile(valid, [0.5, 99.5]))
        unit = np.clip((values - lo) / (hi - lo if hi > lo else 1.0), 0.0, 1.0)
    gray = unit * 255.0
    shape = str(ds.get("PresentationLUTShape", "")).upper()
    if photometric == "MONOCHROME1" or shape == "INVERSE":
        gray = 255.0 - gray  # MONOCHROME1 and INVERSE express one inversion, applied once
    result = np.round(gray).astype(np.uint8)
    if mask is not None:
        result[~mask] = 0
    return result


def first_value(value: Any) -> Any:
    """WindowCenter/Width may be multi-valued: the first pair is the default view."""
    return value[0] if isinstance(value, MultiValue | list | tuple) else value


def apply_window(x: np.ndarray, center: float, width: float, function: str = "LINEAR"
                 ) -> np.ndarray:
    """PS3.3 C.11.2.1.2 VOI window functions, output on 0..1."""
    function = function.upper().strip()
    if function == "SIGMOID":
        return 1.0 / (1.0 + np.exp(-4.0 * (x - center) / width))
    if function == "LINEAR_EXACT":
        if width <= 0:
            raise ConversionError("LINEAR_EXACT window width must be > 0")
        return np.clip((x - center) / width + 0.5, 0.0, 1.0)
    if width < 1:
        raise ConversionError("LINEAR window width must be >= 1")
    if width == 1:
        return (x > center - 0.5).astype(np.float64)
    y = (x - (center - 0.5)) / (width - 1) + 0.5
    return np.where(x <= center - 0.5 - (width - 1) / 2, 0.0,
                    np.where(x > center - 0.5 + (width - 1) / 2, 1.0, y))


def convert_dataset(ds: Any, conversion: str = MIMIC,
                    max_source_pixels: int = DEFAULT_MAX_SOURCE_PIXELS) -> ModelImage:
    """Decode one radiograph and apply ``conversion``; ConversionError says why not."""
    if conversion not in CONVERSIONS:
        raise ConversionError(f"unknown conversion {conversion!r} (choose {CONVERSIONS})")
    notes = check_source(ds, max_source_pixels)
    stored = decode(ds)
    if stored.size and stored.min() == stored.max():
        raise ConversionError(f"the decoded image is blank (every pixel is {stored.flat[0]}): "
                              "corrupt data, or no exposure")
    convert = mimic_gray if conversion == MIMIC else window_gray
    gray = convert(ds, stored, notes)
    png, w, h = to_png(gray)
    return ModelImage(png=png, width=w, height=h, conversion=CONVERSION_VERSIONS[conversion],
                      notes=tuple(notes))


def convert_file(path: Path, conversion: str = MIMIC,
                 max_source_pixels: int = DEFAULT_MAX_SOURCE_PIXELS) -> ModelImage:
    return convert_dataset(dcmread(path), conversion, max_source_pixels)
