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
import importlib.metadata
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.backend import (
    DEFAULT_MODEL_ID,
    Backend,
    BackendError,
    BackendInfo,
    recorded_revision,
)
from models.prompts import (
    FINDINGS_MAX_NEW_TOKENS,
    PROMPT_PRESETS,
    REPORT_MAX_NEW_TOKENS,
    REPORT_PROMPT,
)
from models.registry import BackendConfig, canonical, get_backend
from models.study import StudyResult, run_studies
from worker.research.run_input import Request, RunError, load_request
from worker.research.run_setup import SKILL, check_setup

__all__ = ["RunError", "add_arguments", "check_setup", "cmd_run", "details", "run"]

LIMITATIONS = [
    "Output is engineering evidence only; it is not a diagnosis or treatment recommendation.",
    "NV-Reason-CXR-3B can hallucinate, miss findings, or produce overconfident prose.",
    "A qualified professional must review any medical workflow use.",
]
DETAILS_FILE = "gateway_result.json"
# The wrapper's modes; "openai_compatible" is ours and outside the wrapper's schema.
MODES = {"mock": "mock", "local": "hf_transformers", "hf-space": "hf_space_api",
         "openai": "openai_compatible"}
TRUTHY = ("1", "true", "yes", "on")


def _truthy(name: str) -> bool:
    """An environment switch as the wrapper reads one (1, true, yes, on)."""
    return os.environ.get(name, "").strip().lower() in TRUTHY


def _versions() -> tuple[str | None, str | None]:
    """(transformers, torch) versions as installed, None where one is not."""
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


@dataclass(frozen=True)
class Mode:
    """How this run reaches a model, decided once from the flags and the environment."""

    backend: str  # canonical backend name asked for (local, openai, hf-space, mock)
    mock: bool
    local_only: bool

    @property
    def local(self) -> bool:
        return self.backend == "local"

    @property
    def remote(self) -> bool:
        return not self.mock and not self.local


def _mode(args: argparse.Namespace, req: Request) -> Mode:
    """Flags, the fixture's ``mock`` and the wrapper's environment switches, combined."""
    backend = canonical(args.backend)
    local_only = bool(backend == "local" and (args.local_files_only
                                              or _truthy("TRANSFORMERS_OFFLINE")
                                              or _truthy("HF_HUB_OFFLINE")))
    return Mode(backend, bool(args.mock or req.mock or _truthy("MOCK_NV_REASON_CXR")),
                local_only)


def _backend_config(args: argparse.Namespace, req: Request, mode: Mode) -> BackendConfig:
    """The backend the flags ask for (the mock answers with the fixture's or the
    wrapper's text)."""
    return BackendConfig(
        name="mock" if mode.mock else mode.backend, model_id=args.model_id,
        device=args.device, allow_cpu=args.allow_cpu, torch_dtype=args.torch_dtype,
        local_files_only=mode.local_only,
        mock_response=req.mock_response or wrapper_mock_response(req),
        openai_url=args.openai_url or "", openai_api_key=os.environ.get("OPENAI_API_KEY", ""),
        hf_space_url=os.environ.get("CXR_HF_SPACE_URL", ""),
    )


def _runtime(args: argparse.Namespace, mode: Mode, info: BackendInfo, result: StudyResult,
             seconds: float) -> dict[str, Any]:
    """The wrapper's ``runtime`` section: what ran, where, and how long."""
    if mode.mock:
        versions: tuple[str | None, str | None] = (None, None)
        tokens: int | None = 0
        truncated: bool | None = False
    elif mode.local:
        versions = _versions()
        tokens = result.findings.generated_tokens
        truncated = bool(result.findings.hit_limit(args.max_new_tokens))
    else:
        versions, tokens, truncated = (None, None), None, None
    where = "none" if mode.mock else "remote" if mode.remote else None
    return {
        "model": args.model_id if mode.local else DEFAULT_MODEL_ID,
        "mode": "mock" if mode.mock else MODES[mode.backend],
        "mock": mode.mock,
        "device": where or info.settings.get("device"),
        "torch_dtype": where or info.settings.get("torch_dtype"),
        "max_new_tokens": args.max_new_tokens if mode.local else None,
        "inference_seconds": round(seconds, 6),
        "local_files_only": mode.local_only,
        "transformers_version": versions[0],
        "torch_version": versions[1],
        "generated_tokens": tokens,
        "truncated_by_max_new_tokens": truncated,
        # the backend's own identity (models.registry.describe); the Space names no revision
        "model_revision": recorded_revision(info) if info.name != "hf-space" else None,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    """One image through the model: the wrapper's JSON (with the gateway's extras under
    ``gateway`` when asked), the extras also into ``--out-dir``."""
    out_dir = Path(args.out_dir).resolve() if args.out_dir else None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    req = load_request(args, out_dir)
    for warning in req.image.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    mode = _mode(args, req)
    start = time.perf_counter()
    try:
        backend: Backend = get_backend(_backend_config(args, req, mode))
        result = run_studies(backend, [req.image.png], req.prompt, with_report=args.report,
                             findings_tokens=args.max_new_tokens,
                             report_tokens=args.report_max_new_tokens)[0]
    except BackendError as exc:
        raise RunError(f"NV-Reason-CXR inference failed: {exc}") from exc
    seconds = time.perf_counter() - start
    image = req.image
    doc: dict[str, Any] = {
        "skill": SKILL,
        "input": {
            "case_id": req.case_id,
            "prompt": req.prompt,
            "image": {"path": str(image.path), "source": image.source, "format": image.fmt,
                      "width": image.width, "height": image.height, "sha256": image.sha256},
        },
        "output": {"response_text": result.findings.text,
                   "text_chars": len(result.findings.text)},
        "runtime": _runtime(args, mode, backend.info, result, seconds),
        "limitations": LIMITATIONS,
    }
    extras = details(result, req, args)
    if out_dir is not None:
        (out_dir / DETAILS_FILE).write_text(json.dumps(extras, indent=2, sort_keys=True))
    if args.details or args.report:
        doc["gateway"] = extras
    return doc


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The wrapper's flags (same names, defaults and environment variables), then ours."""
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
