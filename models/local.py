"""The ``local`` backend: NV-Reason-CXR-3B through Hugging Face Transformers.

Follows the upstream recipe (``AutoModelForImageTextToText`` + ``AutoProcessor(use_fast=
True)``, bf16 on CUDA) with the choices a worker needs on top: the training pixel
budget set explicitly (128*128 .. 476*476), greedy decoding set explicitly rather than
inherited from the checkpoint's generation config, left padding so a batch of studies
generates together, the revision pinned and recorded, float32 on CPU only when asked
for.  One instance per process: Qwen2.5-VL keeps per-call state (``rope_deltas``), so
calls are serialised with a lock.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.backend import (
    DEFAULT_MODEL_ID,
    UNPINNED,
    BackendError,
    BackendInfo,
    Generation,
    ModelRequest,
    pinned_revision,
    snapshot_commit,
)

log = logging.getLogger(__name__)
MIN_PIXELS = 128 * 128
MAX_PIXELS = 476 * 476
DTYPES = ("auto", "float16", "bfloat16", "float32")


@dataclass(frozen=True)
class LocalOptions:
    model_id: str = DEFAULT_MODEL_ID
    revision: str | None = None  # None: the pin for the default model, else the repo default
    device: str = "auto"  # auto | cuda | cuda:N | cpu
    allow_cpu: bool = False
    torch_dtype: str = "auto"
    local_files_only: bool = False
    attn_implementation: str | None = None
    min_pixels: int = MIN_PIXELS
    max_pixels: int = MAX_PIXELS
    min_new_tokens: int = 0  # benchmarks only: force a fixed output length

    @property
    def effective_revision(self) -> str | None:
        if self.revision:
            return self.revision
        return pinned_revision(self.model_id) or None


def cached_commit(model_id: str) -> str | None:
    """The commit of the snapshot ``model_id`` loads from, found without loading anything:
    a path inside a Hugging Face cache snapshot, or the hub cache's ``main`` snapshot of a
    repo id (what transformers records as ``_commit_hash``).  None when nothing is cached
    here, or huggingface_hub is not installed (a gateway node without the model stack)."""
    path = Path(model_id).expanduser()
    if path.is_dir():
        return snapshot_commit(str(path.absolute()))  # as transformers reads it: no resolve
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    try:
        found = try_to_load_from_cache(model_id, "config.json")
    except ValueError:  # not a valid repo id (HFValidationError)
        return None
    return snapshot_commit(found) if isinstance(found, str) else None


def describe_local(model_id: str, revision: str | None = None) -> BackendInfo:
    """The local backend's identity, the same before loading (a batch on a node without
    torch) and after (the loaded backend reports this): the declared revision, else the
    pin for the default model, else the commit of the cached snapshot, else "unpinned"."""
    return BackendInfo(
        name="local", model_id=model_id, is_mock=False,
        model_revision=revision or pinned_revision(model_id) or cached_commit(model_id)
        or UNPINNED)


def resolve_device(device: str, allow_cpu: bool) -> str:
    """The device to load on; the wording follows NVIDIA's wrapper for the same mistakes."""
    import torch

    if device == "cpu" and not allow_cpu:
        raise BackendError(
            "CPU live inference is very slow. Pass --allow-cpu (CXR_ALLOW_CPU=1) to confirm "
            "that you intentionally want CPU inference, or use --mock for a wiring check.",
            permanent=True)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise BackendError(f"requested --device {device} but torch.cuda.is_available() is "
                           "false", permanent=True)
    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if not allow_cpu:
            raise BackendError(
                "CUDA is not available for live inference. Use a CUDA host, pass --allow-cpu "
                "(CXR_ALLOW_CPU=1) for a slow explicit CPU run, or use --mock for setup "
                "checks.", permanent=True)
        return "cpu"
    return device


def resolve_dtype(name: str, device: str) -> Any:
    import torch

    if name not in DTYPES:
        raise BackendError(f"unknown torch dtype {name!r}; choose from {DTYPES}", permanent=True)
    if name == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return getattr(torch, name)


def generated_lengths(rows: Any, stop_ids: set[int], pad_id: int | None) -> list[int]:
    """Tokens each row actually generated: up to and including its first stop token."""
    lengths = []
    for row in rows.tolist():
        n = len(row)
        for i, tok in enumerate(row):
            if tok in stop_ids:
                n = i + 1
                break
        else:
            while pad_id is not None and n and row[n - 1] == pad_id:
                n -= 1
        lengths.append(n)
    return lengths


def _fix_left_padded_rope_deltas(model: Any) -> None:
    """Make batched (left-padded) greedy decoding equal one-at-a-time decoding.

    In transformers 4.56 Qwen2.5-VL's ``get_rope_index`` returns per-row deltas
    ``max_position + 1 - padded_length``, while the decoding steps add them to text
    positions counted from the attention mask (pad tokens excluded).  For a row with
    ``p`` pad tokens every generated token is placed ``p`` positions too early, so a
    padded row generates differently in a batch than alone.  Adding each row's pad
    count to its delta puts the decoding positions where the unpadded run puts them;
    prefill positions are unaffected.  Covered by the batched-equals-single test.
    """
    inner: Any = getattr(model, "model", None)
    original = getattr(inner, "get_rope_index", None)
    if inner is None or original is None or getattr(original, "_cxr_fixed", False):
        return

    def get_rope_index(input_ids: Any = None, image_grid_thw: Any = None,
                       video_grid_thw: Any = None, second_per_grid_ts: Any = None,
                       attention_mask: Any = None) -> Any:
        positions, deltas = original(input_ids, image_grid_thw, video_grid_thw,
                                     second_per_grid_ts=second_per_grid_ts,
                                     attention_mask=attention_mask)
        if attention_mask is not None and attention_mask.dim() == 2 and input_ids is not None:
            pads = attention_mask.shape[1] - attention_mask.sum(dim=-1, keepdim=True)
            deltas = deltas + pads.to(deltas.device, deltas.dtype)
        return positions, deltas

    get_rope_index._cxr_fixed = True  # type: ignore[attr-defined]
    inner.get_rope_index = get_rope_index


class LocalBackend:
    """Loads once, then generates batches (grouped by token limit) with greedy decoding."""

    def __init__(self, options: LocalOptions, model: Any = None, processor: Any = None) -> None:
        """Load ``options.model_id``; or wrap an already-built ``model`` and ``processor``."""
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.options = options
        self.device = resolve_device(options.device, options.allow_cpu)
        self.dtype = resolve_dtype(options.torch_dtype, self.device)
        revision = options.effective_revision
        common: dict[str, Any] = {"revision": revision,
                                  "local_files_only": options.local_files_only}
        try:
            if processor is None:
                processor = AutoProcessor.from_pretrained(
                    options.model_id, use_fast=True, min_pixels=options.min_pixels,
                    max_pixels=options.max_pixels, padding_side="left", **common)
            if model is None:
                kwargs = dict(common, dtype=self.dtype)
                if options.attn_implementation:
                    kwargs["attn_implementation"] = options.attn_implementation
                model = AutoModelForImageTextToText.from_pretrained(options.model_id, **kwargs)
        except (OSError, ValueError) as exc:  # missing files, invalid repo ids
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise BackendError(f"cannot load model {options.model_id}: {first}",
                               permanent=True) from exc
        self.processor = processor
        self.model = model.eval().to(self.device)
        self._setup(revision)

    def _setup(self, revision: str | None) -> None:
        import torch
        import transformers

        options = self.options
        self.processor.tokenizer.padding_side = "left"
        _fix_left_padded_rope_deltas(self.model)
        tok = self.processor.tokenizer
        gen_cfg = self.model.generation_config
        eos = gen_cfg.eos_token_id if gen_cfg.eos_token_id is not None else tok.eos_token_id
        self.stop_ids = set(eos if isinstance(eos, list) else [eos])
        self.pad_id = gen_cfg.pad_token_id if gen_cfg.pad_token_id is not None else \
            tok.pad_token_id
        identity = describe_local(options.model_id, options.revision)
        commit = getattr(self.model.config, "_commit_hash", None)
        if commit and not revision and commit != identity.model_revision:
            log.warning("loaded %s at commit %s, recorded as %s (the cache changed under it?)",
                        options.model_id, commit, identity.model_revision)
        self.info = dataclasses.replace(
            identity, settings={
                "device": self.device, "torch_dtype": str(self.dtype).replace("torch.", ""),
                "do_sample": "False", "min_pixels": str(options.min_pixels),
                "max_pixels": str(options.max_pixels), "padding_side": "left",
                "transformers": transformers.__version__, "torch": torch.__version__,
            },
        )
        self._lock = threading.Lock()
        log.info("loaded %s@%s on %s (%s); generation: greedy, checkpoint config %s",
                 options.model_id, self.info.model_revision, self.device,
                 self.info.settings["torch_dtype"], gen_cfg.to_json_string(use_diff=True))

    @staticmethod
    def messages(req: ModelRequest) -> list[dict[str, Any]]:
        """Chat messages: the image goes first in the first user turn, as in the demo."""
        out: list[dict[str, Any]] = []
        for i, turn in enumerate(req.turns):
            content: list[dict[str, Any]] = [{"type": "text", "text": turn.text}]
            if i == 0:
                content.insert(0, {"type": "image"})
            out.append({"role": turn.role, "content": content})
        return out

    def generate(self, requests: Sequence[ModelRequest]) -> list[Generation]:
        results: list[Generation | None] = [None] * len(requests)
        by_limit: dict[int, list[int]] = {}
        for i, req in enumerate(requests):
            by_limit.setdefault(req.max_new_tokens, []).append(i)
        for limit, idx in by_limit.items():
            for i, gen in zip(idx, self._generate_batch([requests[i] for i in idx], limit),
                              strict=True):
                results[i] = gen
        return [r for r in results if r is not None]

    def _generate_batch(self, batch: Sequence[ModelRequest], limit: int) -> list[Generation]:
        import torch
        from PIL import Image

        texts = [self.processor.apply_chat_template(self.messages(r), add_generation_prompt=True)
                 for r in batch]
        images = [Image.open(io.BytesIO(r.image_png)).convert("RGB") for r in batch]
        with self._lock:
            start = time.perf_counter()
            inputs = self.processor(text=texts, images=images, return_tensors="pt",
                                    padding=True).to(self.device)
            with torch.inference_mode():
                out = self.model.generate(
                    **inputs, max_new_tokens=limit, do_sample=False, temperature=None,
                    top_p=None, top_k=None, pad_token_id=self.pad_id,
                    min_new_tokens=min(self.options.min_new_tokens, limit) or None,
                )
            seconds = time.perf_counter() - start
        trimmed = out[:, inputs["input_ids"].shape[1]:]
        lengths = generated_lengths(trimmed, self.stop_ids, self.pad_id)
        decoded = self.processor.batch_decode(trimmed, skip_special_tokens=True,
                                              clean_up_tokenization_spaces=False)
        return [Generation(text=t, generated_tokens=n, seconds=seconds)
                for t, n in zip(decoded, lengths, strict=True)]
