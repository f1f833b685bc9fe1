"""``cxr-gateway run``: one image through the model, keeping NVIDIA's wrapper contract.

Offers every flag and environment variable of ``run_nv_reason_cxr.py``, exits with the
same codes and error words for the same mistakes, and by default prints exactly the
wrapper's JSON (``skill``/``input``/``output``/``runtime``/``limitations``; it validates
against the wrapper's own schema).  What the gateway adds (parsed labels and status,
the conversion of a DICOM input, the structured report, warnings) comes under a
``gateway`` key with ``--details``, and in ``gateway_result.json`` in ``--out-dir``.

A DICOM input goes through the same admission and conversion as ``serve``: a lateral
view or a non-chest image is refused with its reason unless ``--force``; the model
input is the converted PNG, which is what ``input.image`` then describes.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import importlib.metadata
import io
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from models.backend import DEFAULT_MODEL_ID, Backend, BackendError, recorded_revision
from models.prompts import (
    FINDINGS_MAX_NEW_TOKENS,
    PROMPT_PRESETS,
    REPORT_MAX_NEW_TOKENS,
    REPORT_PROMPT,
)
from models.registry import BackendConfig, canonical, get_backend
from models.study import StudyResult, run_studies

SKILL = "nv_reason_cxr"
LIMITATIONS = [
    "Output is engineering evidence only; it is not a diagnosis or treatment recommendation.",
    "NV-Reason-CXR-3B can hallucinate, miss findings, or produce overconfident prose.",
    "A qualified professional must review any medical workflow use.",
]
GENERATED = ("generated://synthetic_chest_xray", "generated://synthetic_cxr")
GENERATED_NAME = "input_synthetic_chest_xray.png"
DETAILS_FILE = "gateway_result.json"
# The wrapper's modes; "openai_compatible" is ours and outside the wrapper's schema.
MODES = {"mock": "mock", "local": "hf_transformers", "hf-space": "hf_space_api",
         "openai": "openai_compatible"}
TRUTHY = ("1", "true", "yes", "on")


class RunError(Exception):
    """Anything that ends ``run`` with exit 2 and one ``error:`` line."""


def _truthy(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in TRUTHY


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

    from dicom_gateway.admission import Candidate, rejection_reason
    from dicom_gateway.conversion import ConversionError, convert_dataset

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
    image: LoadedImage
    prompt: str
    case_id: str
    mock: bool
    mock_response: str | None


def _fixture(path: Path, args: argparse.Namespace, prompt: str | None,
             out_dir: Path | None) -> Request:
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
    prompt = prompt or str(fixture.get("prompt") or "") or PROMPT_PRESETS["findings"]
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
    path = Path(args.path).resolve()
    if not path.exists():
        raise RunError(f"input not found: {path}")
    prompt = args.prompt or (PROMPT_PRESETS[args.prompt_preset] if args.prompt_preset
                             else None)
    if path.suffix.lower() == ".json":
        return _fixture(path, args, prompt, out_dir)
    image = load_image(path, "file", args.conversion, args.force, out_dir)
    return Request(image, prompt or PROMPT_PRESETS["findings"], path.stem, False, None)


def _versions() -> tuple[str | None, str | None]:
    out: list[str | None] = []
    for dist in ("transformers", "torch"):
        try:
            out.append(importlib.metadata.version(dist))
        except importlib.metadata.PackageNotFoundError:
            out.append(None)
    return out[0], out[1]


def wrapper_mock_response(req: Request) -> str:
    """The wrapper's own mock text: it names the input and asserts no finding."""
    img = req.image
    return (f"Mock NV-Reason-CXR response for image {req.case_id!r} ({img.fmt}, "
            f"{img.width}x{img.height}). This deterministic response verifies input loading, "
            "prompt wiring, and JSON output only; it does not assert clinical findings.")


def details(result: StudyResult, req: Request, args: argparse.Namespace) -> dict[str, Any]:
    """The gateway's extras: what the SR would say, without the SR."""
    p = result.parsed
    doc: dict[str, Any] = {
        "status": result.status, "answer_status": p.status, "labels": list(result.labels),
        "near_misses": p.near_misses, "unknown_labels": list(p.unknown),
        "format_ok": p.format_ok, "truncated": p.truncated, "refused": p.refused,
        "reasoning": p.reasoning, "answer": p.answer, "notes": list(p.notes),
        "source_dicom": req.image.dicom, "warnings": req.image.warnings, "report": None,
    }
    if args.report:
        rep = result.parsed_report
        doc["report"] = None if result.report is None or rep is None else {
            "prompt": REPORT_PROMPT,
            "response_text": result.report.text,
            "text_chars": len(result.report.text),
            "generated_tokens": result.report.generated_tokens,
            "max_new_tokens": args.report_max_new_tokens,
            "truncated": rep.truncated,
            "reasoning": rep.reasoning,
            "sections": [{"heading": s.heading, "known": s.known, "items": list(s.items)}
                         for s in rep.sections],
        }
        if result.report is None:
            doc["report_skipped"] = (f"the first answer was {result.status}, not a reading: "
                                     "no report was asked for")
    return doc


def run(args: argparse.Namespace) -> dict[str, Any]:
    out_dir = Path(args.out_dir).resolve() if args.out_dir else None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    req = load_request(args, out_dir)
    for warning in req.image.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    backend_name = canonical(args.backend)
    mock = bool(args.mock or req.mock or _truthy("MOCK_NV_REASON_CXR"))
    local = backend_name == "local"
    local_only = bool(local and (args.local_files_only or _truthy("TRANSFORMERS_OFFLINE")
                                 or _truthy("HF_HUB_OFFLINE")))
    cfg = BackendConfig(
        name="mock" if mock else backend_name, model_id=args.model_id, device=args.device,
        allow_cpu=args.allow_cpu, torch_dtype=args.torch_dtype, local_files_only=local_only,
        mock_response=req.mock_response or wrapper_mock_response(req),
        openai_url=args.openai_url or "", openai_api_key=os.environ.get("OPENAI_API_KEY", ""),
        hf_space_url=os.environ.get("CXR_HF_SPACE_URL", ""),
    )
    start = time.perf_counter()
    try:
        backend: Backend = get_backend(cfg)
        result = run_studies(backend, [req.image.png], req.prompt, with_report=args.report,
                             findings_tokens=args.max_new_tokens,
                             report_tokens=args.report_max_new_tokens)[0]
    except BackendError as exc:
        raise RunError(f"NV-Reason-CXR inference failed: {exc}") from exc
    seconds = time.perf_counter() - start
    info = backend.info
    remote = not mock and not local
    # the backend's own identity (models.registry.describe); the Space names no revision
    revision = recorded_revision(info) if info.name != "hf-space" else None
    if mock:
        versions: tuple[str | None, str | None] = (None, None)
        tokens: int | None = 0
        truncated: bool | None = False
    elif local:
        versions = _versions()
        tokens = result.findings.generated_tokens
        truncated = bool(result.findings.hit_limit(args.max_new_tokens))
    else:
        versions, tokens, truncated = (None, None), None, None
    doc: dict[str, Any] = {
        "skill": SKILL,
        "input": {
            "case_id": req.case_id,
            "prompt": req.prompt,
            "image": {"path": str(req.image.path), "source": req.image.source,
                      "format": req.image.fmt, "width": req.image.width,
                      "height": req.image.height, "sha256": req.image.sha256},
        },
        "output": {"response_text": result.findings.text,
                   "text_chars": len(result.findings.text)},
        "runtime": {
            "model": args.model_id if local else DEFAULT_MODEL_ID,
            "mode": "mock" if mock else MODES[backend_name],
            "mock": mock,
            "device": "none" if mock else "remote" if remote else info.settings.get("device"),
            "torch_dtype": "none" if mock else "remote" if remote
            else info.settings.get("torch_dtype"),
            "max_new_tokens": args.max_new_tokens if local else None,
            "inference_seconds": round(seconds, 6),
            "local_files_only": local_only,
            "transformers_version": versions[0],
            "torch_version": versions[1],
            "generated_tokens": tokens,
            "truncated_by_max_new_tokens": truncated,
            "model_revision": revision,
        },
        "limitations": LIMITATIONS,
    }
    extras = details(result, req, args)
    if out_dir is not None:
        (out_dir / DETAILS_FILE).write_text(json.dumps(extras, indent=2, sort_keys=True))
    if args.details or args.report:
        doc["gateway"] = extras
    return doc


def _dependency(dist: str, module: str) -> dict[str, Any]:
    try:
        version: str | None = importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return {"installed": False, "version": None}
    try:
        importlib.import_module(module)
        importable = True
    except Exception:  # a broken install is what this report is for
        importable = False
    return {"installed": True, "importable": importable, "version": version}


def _cuda() -> dict[str, Any]:
    try:
        import torch
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        return {"available": False, "error": f"torch import failed: {exc}", "devices": []}
    devices = []
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            devices.append({"index": i, "name": props.name,
                            "memory_total_mb": round(props.total_memory / 2**20)})
    return {"available": bool(devices), "device_count": len(devices), "devices": devices,
            "torch_cuda_version": getattr(torch.version, "cuda", None)}


def _cache(model_id: str) -> dict[str, Any]:
    empty = {"inspectable": True, "cached": False, "repo_id": model_id, "revisions": 0,
             "size_on_disk_mb": 0, "has_config": False, "has_preprocessor_config": False,
             "has_generation_config": False, "has_safetensors": False}

    def described(names: set[str], size: int, revisions: int) -> dict[str, Any]:
        return dict(empty, cached=True, revisions=revisions, size_on_disk_mb=round(size / 2**20),
                    has_config="config.json" in names,
                    has_preprocessor_config="preprocessor_config.json" in names,
                    has_generation_config="generation_config.json" in names,
                    has_safetensors=any(n.endswith(".safetensors") for n in names))

    folder = Path(model_id)
    if folder.is_dir():  # ours: a local checkpoint folder is a model id too
        files = [p for p in folder.iterdir() if p.is_file()]
        return described({p.name for p in files}, sum(p.stat().st_size for p in files), 1)
    try:
        from huggingface_hub import scan_cache_dir

        cache = scan_cache_dir()
    except Exception as exc:  # noqa: BLE001 - no cache folder yet is a normal state
        return {"inspectable": False, "cached": False, "error": str(exc)}
    for repo in cache.repos:
        if repo.repo_id == model_id and repo.repo_type == "model":
            names = {f.file_name for rev in repo.revisions for f in rev.files}
            return described(names, repo.size_on_disk, len(repo.revisions))
    return empty


def check_setup(args: argparse.Namespace) -> dict[str, Any]:
    deps = {name: _dependency(name, mod) for name, mod in (
        ("torch", "torch"), ("torchvision", "torchvision"), ("transformers", "transformers"),
        ("Pillow", "PIL"), ("huggingface_hub", "huggingface_hub"))}
    cuda, cache = _cuda(), _cache(args.model_id)
    missing = [n for n in ("torch", "transformers", "Pillow")
               if not deps[n].get("installed") or not deps[n].get("importable", True)]
    if missing:
        rec = "install_required_dependencies"
    elif not cuda.get("available"):
        rec = "use_cuda_or_pass_explicit_cpu_flags_for_slow_testing"
    elif not cache.get("has_safetensors"):
        rec = "download_model_weights_or_run_without_local_files_only"
    else:
        rec = "ready_for_live_cuda_inference"
    return {"skill": SKILL, "setup": {
        "python": sys.executable, "model": args.model_id,
        "recommended_torch_dtype": "bfloat16_on_cuda_float32_on_cpu",
        "dependencies": deps,
        "optional_dependencies": {"accelerate": _dependency("accelerate", "accelerate")},
        "cuda": cuda, "model_cache": cache, "recommendation": rec,
    }}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", nargs="?", metavar="image_or_fixture",
                   help="PNG, JPEG or DICOM image, or a wrapper JSON fixture")
    p.add_argument("--prompt", help="exact prompt (wins over --prompt-preset)")
    p.add_argument("--prompt-preset", choices=sorted(PROMPT_PRESETS),
                   help="one of the wrapper's prompts, used when --prompt is not given")
    p.add_argument("--backend", default="local",
                   choices=["local", "hf-space-api", "hf-space", "openai", "mock"],
                   help="local Transformers (default), the public Space (images leave the "
                        "site), an OpenAI-compatible server, or the mock")
    p.add_argument("--mock", action="store_true",
                   help="skip the model: the wrapper's deterministic mock response")
    p.add_argument("--out-dir", help="artefact folder (needed for generated fixtures); "
                   f"also receives {DETAILS_FILE} and a DICOM input's model-input PNG")
    p.add_argument("--model-id", default=os.environ.get("NV_REASON_CXR_MODEL", DEFAULT_MODEL_ID),
                   help="Hugging Face model id or local folder (env NV_REASON_CXR_MODEL)")
    p.add_argument("--device", default="auto", help="auto, cuda, cuda:N or cpu")
    p.add_argument("--allow-cpu", action="store_true",
                   help="permit intentionally slow CPU inference")
    p.add_argument("--torch-dtype", default="auto",
                   choices=["auto", "float16", "bfloat16", "float32"],
                   help="auto: bfloat16 on CUDA, float32 on CPU")
    p.add_argument("--max-new-tokens", type=int, default=FINDINGS_MAX_NEW_TOKENS,
                   help="generation limit of the findings turn")
    p.add_argument("--local-files-only", action="store_true",
                   help="never download model files (also TRANSFORMERS_OFFLINE/HF_HUB_OFFLINE)")
    p.add_argument("--check-setup", action="store_true",
                   help="print dependency, GPU and model-cache readiness JSON and exit")
    p.add_argument("--details", action="store_true",
                   help="add the gateway's fields (labels, status, report, conversion) under "
                        "a 'gateway' key; the output then no longer fits the wrapper's schema")
    p.add_argument("--report", action="store_true",
                   help="two turns: findings, then 'Write a structured report.' (only after "
                        "an answer with labels); implies --details")
    p.add_argument("--report-max-new-tokens", type=int, default=REPORT_MAX_NEW_TOKENS,
                   help="generation limit of the report turn")
    p.add_argument("--openai-url", default=os.environ.get("CXR_OPENAI_URL", ""),
                   help="openai backend: server base URL (env CXR_OPENAI_URL)")
    p.add_argument("--conversion", default="mimic", choices=["mimic", "window"],
                   help="DICOM input: pixel conversion (mimic = as the training data)")
    p.add_argument("--force", action="store_true",
                   help="DICOM input: run even if admission refuses it (lateral, not chest)")


def cmd_run(args: argparse.Namespace) -> int:
    """Exit 0 with JSON on stdout, or 2 with one ``error:`` line, as the wrapper does."""
    if args.max_new_tokens < 1 or args.report_max_new_tokens < 1:
        print("error: --max-new-tokens must be >= 1", file=sys.stderr)
        return 2
    if canonical(args.backend) != "local" and args.local_files_only:
        print("error: --local-files-only is only valid with --backend local", file=sys.stderr)
        return 2
    try:
        if args.check_setup:
            doc = check_setup(args)
        elif not args.path:
            raise RunError("image_or_fixture is required unless --check-setup is used")
        else:
            doc = run(args)
    except (RunError, BackendError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(doc, indent=2, sort_keys=True))
    return 0
