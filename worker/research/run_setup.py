"""``cxr-gateway run --check-setup``: the wrapper's readiness report, unchanged in shape.

Which model dependencies are installed and importable, which GPUs torch sees, and
whether the model's files are in the Hugging Face cache (or a local checkpoint folder),
with the wrapper's one-word recommendation of what to do next.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import sys
from pathlib import Path
from typing import Any

SKILL = "nv_reason_cxr"


def _dependency(dist: str, module: str) -> dict[str, Any]:
    """Installed (by its distribution) and importable (a broken install imports not)."""
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
    """The CUDA devices torch sees, or why it cannot say."""
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
    """What of the model is on disk: a local checkpoint folder, or the Hub cache's copy."""
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
    """The wrapper's ``--check-setup`` JSON for ``args.model_id``."""
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
