"""``cxr-gateway run``'s input: an image or a wrapper fixture, as the model will see it.

The wrapper accepts a PNG or JPEG file, or a JSON fixture naming one (or asking for a
generated synthetic picture); the gateway adds DICOM, admitted and converted exactly as
``serve`` does, so what ``run`` reports for a DICOM file is what the gateway would send
the model.  Every mistake in the input is a ``RunError`` with the wrapper's words.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from models.prompts import resolve_prompt

GENERATED = ("generated://synthetic_chest_xray", "generated://synthetic_cxr")
GENERATED_NAME = "input_synthetic_chest_xray.png"


class RunError(Exception):
    """Anything that ends ``run`` with exit 2 and one ``error:`` line."""


@dataclass
class LoadedImage:
    """The image the model sees, described as the wrapper describes its input."""

    png: bytes
    path: Path
    source: str  # file | fixture_file | generated_fixture
    fmt: str  # png | jpeg
    width: int
    height: int
    sha256: str
    dicom: dict[str, Any] | None = None  # the DICOM it was converted from, if any
    warnings: list[str] = field(default_factory=list)


def _sniff(head: bytes) -> str | None:
    """The format by its magic bytes (a suffix can lie): png, jpeg, dicom or None."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8"):
        return "jpeg"
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    return None


def synthetic_cxr_png(size: int = 96) -> bytes:
    """A deterministic, vaguely chest-shaped test picture (two dark lung fields)."""
    import numpy as np
    from PIL import Image

    y, x = np.mgrid[0:size, 0:size] / size
    img = np.full((size, size), 200.0)
    for cx in (0.3, 0.7):
        img -= 150 * np.exp(-(((x - cx) / 0.13) ** 2 + ((y - 0.5) / 0.28) ** 2))
    buf = io.BytesIO()
    Image.fromarray(img.clip(0, 255).astype("uint8")).convert("RGB").save(buf, format="PNG")
    return buf.getvalue()


def plausibility_warnings(image: Any) -> list[str]:
    """Why a PNG/JPEG looks unlike a chest radiograph (the model may refuse or invent).

    Cheap, conservative signs only: strong colour, or pixel-to-pixel noise of the kind
    no radiograph has.  A warning, not a refusal: the wrapper accepts any PNG or JPEG.
    """
    import numpy as np

    rgb = np.asarray(image.convert("RGB"), dtype=np.float64)
    out = []
    chroma = np.abs(rgb - rgb.mean(axis=2, keepdims=True)).mean()
    if chroma > 12:
        out.append(f"the image is in colour (mean chroma {chroma:.0f}/255): radiographs are "
                   "grey; the model is trained to refuse other images")
    grey = rgb.mean(axis=2)
    if grey.shape[0] > 8 and grey.shape[1] > 8:
        jump = np.abs(np.diff(grey, axis=1)).mean()
        spread = grey.std()
        if spread > 0 and jump / spread > 0.8:
            out.append("the image looks like noise (neighbouring pixels are unrelated), not "
                       "a radiograph")
    return out


def _from_dicom(path: Path, data: bytes, source: str, conversion: str, force: bool,
                out_dir: Path | None) -> LoadedImage:
    """Admission as ``serve`` applies it, then the gateway's conversion to a PNG."""
    from pydicom import dcmread

    from dicom_gateway.imaging.conversion import ConversionError, convert_dataset
    from dicom_gateway.routing.admission import Candidate, rejection_reason

    try:
        ds = dcmread(io.BytesIO(data))
        reason = rejection_reason(Candidate.from_dataset(ds))
    except Exception as exc:  # noqa: BLE001 - an unreadable header is the user's input
        raise RunError(f"cannot read DICOM {path}: {exc}") from exc
    if reason and not force:
        raise RunError(f"{path}: not admitted: {reason}; this model reads frontal chest "
                       "radiographs (pass --force to run it anyway)")
    try:
        model_image = convert_dataset(ds, conversion)
    except (ConversionError, ValueError) as exc:
        raise RunError(f"{path}: {exc}") from exc
    folder = out_dir or Path(tempfile.gettempdir()) / "cxr-gateway-run"
    folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(model_image.png).hexdigest()
    png_path = folder / f"{path.stem}.model-input.png"
    png_path.write_bytes(model_image.png)
    dicom = {"path": str(path), "sha256": hashlib.sha256(data).hexdigest(),
             "admission": reason or "admitted", "forced": bool(reason and force),
             "conversion": model_image.conversion, "conversion_notes": list(model_image.notes)}
    return LoadedImage(model_image.png, png_path, source, "png", model_image.width,
                       model_image.height, digest, dicom)


def load_image(path: Path, source: str, conversion: str = "mimic", force: bool = False,
               out_dir: Path | None = None) -> LoadedImage:
    """A PNG or JPEG as it is (a JPEG re-encoded as PNG for the model), or a DICOM file
    admitted and converted; warnings where it looks unlike a radiograph."""
    from PIL import Image

    if not path.exists():
        raise RunError(f"image not found: {path}")
    if not path.is_file():
        raise RunError(f"image path is not a file: {path}")
    data = path.read_bytes()
    fmt = _sniff(data[:132])
    if fmt == "dicom":
        return _from_dicom(path, data, source, conversion, force, out_dir)
    if fmt is None:
        raise RunError(f"unsupported image format for {path}: expected PNG or JPEG (or "
                       f"DICOM), got suffix {path.suffix.lower()!r}")
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            width, height = im.size
            warnings = plausibility_warnings(im)
            png = data
            if fmt == "jpeg":
                buf = io.BytesIO()
                im.convert("RGB").save(buf, format="PNG")
                png = buf.getvalue()
    except (OSError, ValueError) as exc:
        raise RunError(f"Pillow could not open image {path}: {exc}") from exc
    return LoadedImage(png, path, source, fmt, width, height, hashlib.sha256(data).hexdigest(),
                       warnings=warnings)


@dataclass
class Request:
    """One run's input: the image, the prompt and the wrapper's mock switches."""

    image: LoadedImage
    prompt: str
    case_id: str
    mock: bool
    mock_response: str | None


def _fixture(path: Path, args: argparse.Namespace, out_dir: Path | None) -> Request:
    """A wrapper JSON fixture: its image (or a generated one), case id, prompt and mock."""
    try:
        fixture = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise RunError(f"fixture is not valid JSON: {path}: {exc}") from exc
    if not isinstance(fixture, dict):
        raise RunError(f"fixture must be a JSON object: {path}")
    ref = str(fixture.get("image_path") or fixture.get("image") or "").strip()
    case_id = str(fixture.get("case_id") or path.stem)
    response = fixture.get("mock_response")
    if response is not None and not isinstance(response, str):
        raise RunError("fixture field mock_response must be a string when present")
    prompt = resolve_prompt(args.prompt, args.prompt_preset, str(fixture.get("prompt") or ""))
    if ref in GENERATED:
        if out_dir is None:
            raise RunError("--out-dir is required when a JSON fixture requests "
                           "generated://synthetic_chest_xray")
        img_path = out_dir / GENERATED_NAME
        img_path.write_bytes(synthetic_cxr_png())
        image = load_image(img_path, "generated_fixture")
    elif not ref:
        raise RunError("fixture must include image_path or use generated://synthetic_chest_xray")
    else:
        img_path = Path(ref)
        if not img_path.is_absolute():
            img_path = (path.parent / img_path).resolve()
        image = load_image(img_path, "fixture_file", args.conversion, args.force, out_dir)
    return Request(image, prompt, case_id, bool(fixture.get("mock", False)), response)


def load_request(args: argparse.Namespace, out_dir: Path | None) -> Request:
    """The command line's input: a fixture (``.json``) or an image file."""
    path = Path(args.path).resolve()
    if not path.exists():
        raise RunError(f"input not found: {path}")
    if path.suffix.lower() == ".json":
        return _fixture(path, args, out_dir)
    image = load_image(path, "file", args.conversion, args.force, out_dir)
    return Request(image, resolve_prompt(args.prompt, args.prompt_preset), path.stem, False,
                   None)
