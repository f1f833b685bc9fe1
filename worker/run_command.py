"""``cxr-gateway run``: one image through the model, the NVIDIA wrapper's way, and more.

Offers every flag and environment variable of ``run_nv_reason_cxr.py`` and prints its
JSON schema (``skill``/``input``/``output``/``runtime``/``limitations``) plus our parsed
fields: labels, report sections, format validity, truncation, refusal.  Input may be
PNG, JPEG, DICOM (through the gateway's own conversion) or the wrapper's JSON fixtures.
Any failure: exit 2 and one ``error: ...`` line on stderr.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import importlib.metadata
import io
import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.backend import Backend, BackendError
from models.prompts import (
    FINDINGS_MAX_NEW_TOKENS,
    PROMPT_PRESETS,
    REPORT_MAX_NEW_TOKENS,
    resolve_prompt,
)
from models.registry import DEFAULT_MODEL_ID, BackendConfig, canonical, get_backend
from models.study import run_studies

SKILL = "nv_reason_cxr"
LIMITATIONS = [
    "Output is engineering evidence only; it is not a diagnosis or treatment recommendation.",
    "NV-Reason-CXR-3B can hallucinate, miss findings, or produce overconfident prose.",
    "A qualified professional must review any medical workflow use.",
]
GENERATED = ("generated://synthetic_chest_xray", "generated://synthetic_cxr")
MODES = {"mock": "mock", "local": "hf_transformers", "hf-space": "hf_space_api",
         "openai": "openai_compatible"}
TRUTHY = ("1", "true", "yes", "on")


class RunError(Exception):
    """Anything that ends ``run`` with exit 2 and one clear line."""


def _truthy(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in TRUTHY


@dataclass
class LoadedImage:
    png: bytes
    path: str
    source: str  # file | fixture_file | generated_fixture
    fmt: str  # png | jpeg | dicom
    width: int
    height: int
    sha256: str
    conversion: dict[str, Any] | None = None


def _sniff(data: bytes) -> str | None:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if len(data) > 132 and data[128:132] == b"DICM":
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


def load_image(path: Path, source: str, conversion: str) -> LoadedImage:
    from PIL import Image

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RunError(f"cannot read {path}: {exc.strerror or exc}") from exc
    fmt = _sniff(data)
    digest = hashlib.sha256(data).hexdigest()
    if fmt == "dicom":
        from pydicom import dcmread

        from dicom_gateway.conversion import ConversionError, convert_dataset

        try:
            model_image = convert_dataset(dcmread(io.BytesIO(data)), conversion)
        except (ConversionError, ValueError) as exc:
            raise RunError(f"{path}: {exc}") from exc
        return LoadedImage(model_image.png, str(path), source, "dicom", model_image.width,
                           model_image.height, digest,
                           {"name": model_image.conversion, "notes": list(model_image.notes)})
    if fmt not in ("png", "jpeg"):
        raise RunError(f"{path}: not a PNG, JPEG or DICOM file")
    with Image.open(io.BytesIO(data)) as im:
        width, height = im.size
        if fmt == "jpeg":
            buf = io.BytesIO()
            im.convert("RGB").save(buf, format="PNG")
            data = buf.getvalue()
    return LoadedImage(data, str(path), source, fmt, width, height, digest)


@dataclass
class Request:
    image: LoadedImage
    prompt: str
    case_id: str
    mock: bool
    mock_response: str | None


def load_request(args: argparse.Namespace) -> Request:
    path = Path(args.path)
    prompt = resolve_prompt(args.prompt, args.prompt_preset)
    if path.suffix.lower() != ".json":
        return Request(load_image(path, "file", args.conversion), prompt, path.stem, False, None)
    try:
        fixture = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise RunError(f"cannot read fixture {path}: {exc}") from exc
    if not isinstance(fixture, dict):
        raise RunError(f"fixture {path} is not a JSON object")
    ref = fixture.get("image_path") or fixture.get("image")
    if not ref:
        raise RunError(f"fixture {path} names no image_path")
    case_id = str(fixture.get("case_id") or path.stem)
    if str(ref) in GENERATED:
        if not args.out_dir:
            raise RunError("generated fixtures need --out-dir for the synthetic image")
        out = Path(args.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        img_path = out / f"{case_id}_synthetic_cxr.png"
        img_path.write_bytes(synthetic_cxr_png())
        image = load_image(img_path, "generated_fixture", args.conversion)
    else:
        img_path = Path(str(ref))
        if not img_path.is_absolute():
            img_path = path.parent / img_path
        image = load_image(img_path, "fixture_file", args.conversion)
    if not args.prompt and not args.prompt_preset and fixture.get("prompt"):
        prompt = str(fixture["prompt"])
    return Request(image, prompt, case_id, bool(fixture.get("mock")),
                   fixture.get("mock_response"))


def _backend_name(args: argparse.Namespace, request_mock: bool) -> str:
    if args.mock or request_mock or _truthy("MOCK_NV_REASON_CXR"):
        return "mock"
    return canonical(args.backend)


def _versions() -> tuple[str | None, str | None]:
    out: list[str | None] = []
    for dist in ("transformers", "torch"):
        try:
            out.append(importlib.metadata.version(dist))
        except importlib.metadata.PackageNotFoundError:
            out.append(None)
    return out[0], out[1]


def run(args: argparse.Namespace) -> dict[str, Any]:
    request = load_request(args)
    backend_name = _backend_name(args, request.mock)
    local_only = bool(args.local_files_only or _truthy("TRANSFORMERS_OFFLINE")
                      or _truthy("HF_HUB_OFFLINE"))
    if local_only and backend_name == "hf-space" and args.local_files_only:
        raise RunError("--local-files-only cannot be used with the hf-space-api backend")
    cfg = BackendConfig(
        name=backend_name, model_id=args.model_id, device=args.device,
        allow_cpu=args.allow_cpu, torch_dtype=args.torch_dtype, local_files_only=local_only,
        mock_response=request.mock_response, openai_url=args.openai_url or "",
        openai_api_key=os.environ.get("OPENAI_API_KEY", ""),
        hf_space_url=os.environ.get("CXR_HF_SPACE_URL", ""),
    )
    backend: Backend = get_backend(cfg)
    start = time.perf_counter()
    result = run_studies(backend, [request.image.png], request.prompt, with_report=args.report,
                         findings_tokens=args.max_new_tokens,
                         report_tokens=args.report_max_new_tokens)[0]
    seconds = time.perf_counter() - start
    info = backend.info
    transformers_v, torch_v = _versions() if backend_name == "local" else (None, None)
    tokens = result.findings.generated_tokens
    remote = backend_name in ("hf-space", "openai")
    doc: dict[str, Any] = {
        "skill": SKILL,
        "input": {
            "case_id": request.case_id,
            "prompt": request.prompt,
            "image": {"path": request.image.path, "source": request.image.source,
                      "format": request.image.fmt, "width": request.image.width,
                      "height": request.image.height, "sha256": request.image.sha256},
        },
        "output": {"response_text": result.findings.text,
                   "text_chars": len(result.findings.text)},
        "runtime": {
            "model": info.model_id,
            "mode": MODES[backend_name],
            "mock": info.is_mock,
            "device": "none" if info.is_mock else "remote" if remote
            else info.settings.get("device"),
            "torch_dtype": "none" if info.is_mock else "remote" if remote
            else info.settings.get("torch_dtype"),
            "max_new_tokens": None if backend_name == "hf-space" else args.max_new_tokens,
            "inference_seconds": round(seconds, 3),
            "local_files_only": local_only,
            "transformers_version": transformers_v,
            "torch_version": torch_v,
            "generated_tokens": 0 if info.is_mock else tokens,
            "truncated_by_max_new_tokens": bool(result.findings.hit_limit(args.max_new_tokens)),
            "model_revision": info.model_revision,
        },
        "limitations": LIMITATIONS,
        "parsed": {
            "status": result.parsed.status,
            "labels": list(result.parsed.labels),
            "near_misses": result.parsed.near_misses,
            "unknown_labels": list(result.parsed.unknown),
            "format_ok": result.parsed.format_ok,
            "truncated": result.parsed.truncated,
            "refused": result.parsed.refused,
            "reasoning": result.parsed.reasoning,
        },
        "conversion": request.image.conversion,
        "report": None,
    }
    if result.report is not None and result.sections is not None:
        s = result.sections
        doc["report"] = {
            "prompt": "Write a structured report.",
            "response_text": result.report.text,
            "text_chars": len(result.report.text),
            "generated_tokens": result.report.generated_tokens,
            "truncated_by_max_new_tokens": bool(
                result.report.hit_limit(args.report_max_new_tokens)),
            "sections": {
                "indication": s.indication, "comparison": s.comparison,
                "technique": s.technique,
                "findings": [{"region": r, "text": t} for r, t in s.findings],
                "impression": list(s.impression), "unsectioned": s.unsectioned,
            },
        }
    return doc


def _dependency(dist: str, module: str) -> dict[str, Any]:
    try:
        version: str | None = importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return {"installed": False, "importable": False, "version": None}
    try:
        importlib.import_module(module)
        importable = True
    except Exception:  # a broken install is what this report is for
        importable = False
    return {"installed": True, "importable": importable, "version": version}


def check_setup(args: argparse.Namespace) -> dict[str, Any]:
    deps = {name: _dependency(name, mod) for name, mod in (
        ("torch", "torch"), ("torchvision", "torchvision"), ("transformers", "transformers"),
        ("Pillow", "PIL"), ("huggingface_hub", "huggingface_hub"))}
    cuda: dict[str, Any] = {"available": False, "device_count": 0, "devices": [],
                            "torch_cuda_version": None}
    if deps["torch"]["importable"]:
        import torch

        cuda["torch_cuda_version"] = torch.version.cuda
        if torch.cuda.is_available():
            cuda["available"] = True
            cuda["device_count"] = torch.cuda.device_count()
            cuda["devices"] = [
                {"index": i, "name": torch.cuda.get_device_name(i),
                 "memory_total_mb": torch.cuda.get_device_properties(i).total_memory // 2**20}
                for i in range(torch.cuda.device_count())
            ]
    cache: dict[str, Any] = {"inspectable": False, "cached": False, "repo_id": args.model_id,
                             "revisions": [], "size_on_disk_mb": 0.0, "has_config": False,
                             "has_preprocessor_config": False, "has_generation_config": False,
                             "has_safetensors": False}
    if Path(args.model_id).is_dir():
        files = {p.name for p in Path(args.model_id).iterdir()}
        cache.update(inspectable=True, cached=True, revisions=["local-directory"],
                     size_on_disk_mb=round(sum(p.stat().st_size for p in
                                               Path(args.model_id).iterdir()) / 2**20, 1),
                     has_config="config.json" in files,
                     has_preprocessor_config="preprocessor_config.json" in files,
                     has_generation_config="generation_config.json" in files,
                     has_safetensors=any(f.endswith(".safetensors") for f in files))
    elif deps["huggingface_hub"]["importable"]:
        from huggingface_hub import scan_cache_dir

        try:
            info = scan_cache_dir()
            cache["inspectable"] = True
            for repo in info.repos:
                if repo.repo_id == args.model_id:
                    names = {f.file_name for rev in repo.revisions for f in rev.files}
                    cache.update(cached=True, revisions=[r.commit_hash for r in repo.revisions],
                                 size_on_disk_mb=round(repo.size_on_disk / 2**20, 1),
                                 has_config="config.json" in names,
                                 has_preprocessor_config="preprocessor_config.json" in names,
                                 has_generation_config="generation_config.json" in names,
                                 has_safetensors=any(n.endswith(".safetensors") for n in names))
        except Exception:  # no cache directory yet is a normal state
            cache["inspectable"] = False
    required = ("torch", "torchvision", "transformers", "Pillow", "huggingface_hub")
    if not all(deps[d]["importable"] for d in required):
        rec = "install_required_dependencies"
    elif not cuda["available"]:
        rec = "use_cuda_or_pass_explicit_cpu_flags_for_slow_testing"
    elif not (cache["cached"] and cache["has_safetensors"]):
        rec = "download_model_weights_or_run_without_local_files_only"
    else:
        rec = "ready_for_live_cuda_inference"
    return {"skill": SKILL, "setup": {
        "python": platform.python_version(), "model": args.model_id,
        "recommended_torch_dtype": "bfloat16_on_cuda_float32_on_cpu",
        "dependencies": deps,
        "optional_dependencies": {"accelerate": _dependency("accelerate", "accelerate")},
        "cuda": cuda, "model_cache": cache, "recommendation": rec,
    }}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", nargs="?", help="PNG, JPEG, DICOM or a wrapper JSON fixture")
    p.add_argument("--prompt", help="exact prompt (wins over --prompt-preset)")
    p.add_argument("--prompt-preset", choices=sorted(PROMPT_PRESETS))
    p.add_argument("--backend", default="local",
                   choices=["local", "hf-space-api", "hf-space", "openai", "mock"])
    p.add_argument("--mock", action="store_true", help="deterministic mock response")
    p.add_argument("--out-dir", help="artifact folder (needed for generated fixtures)")
    p.add_argument("--model-id", default=os.environ.get("NV_REASON_CXR_MODEL", DEFAULT_MODEL_ID))
    p.add_argument("--device", default="auto", help="auto, cuda, cuda:N or cpu")
    p.add_argument("--allow-cpu", action="store_true", help="allow slow CPU inference")
    p.add_argument("--torch-dtype", default="auto",
                   choices=["auto", "float16", "bfloat16", "float32"])
    p.add_argument("--max-new-tokens", type=int, default=FINDINGS_MAX_NEW_TOKENS)
    p.add_argument("--local-files-only", action="store_true")
    p.add_argument("--check-setup", action="store_true", help="report the environment and exit")
    p.add_argument("--report", action="store_true",
                   help="two-turn mode: findings, then 'Write a structured report.'")
    p.add_argument("--report-max-new-tokens", type=int, default=REPORT_MAX_NEW_TOKENS)
    p.add_argument("--openai-url", default=os.environ.get("CXR_OPENAI_URL", ""),
                   help="openai backend: server base URL")
    p.add_argument("--conversion", default="mimic", choices=["mimic", "window"],
                   help="DICOM input: pixel conversion")


def cmd_run(args: argparse.Namespace) -> int:
    try:
        if args.check_setup:
            doc = check_setup(args)
        else:
            if not args.path:
                raise RunError("give an image or fixture path (or --check-setup)")
            if args.max_new_tokens < 1 or args.report_max_new_tokens < 1:
                raise RunError("--max-new-tokens must be at least 1")
            doc = run(args)
    except (RunError, BackendError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(doc, indent=2, sort_keys=True))
    return 0
