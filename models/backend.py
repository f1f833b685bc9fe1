"""The backend interface: a batch of conversations with one image each in, texts out.

Every backend (local Transformers, mock, remote) takes the same requests, so the
worker batches across jobs without knowing which one runs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from models.openai_compat import ClientShards, ImageSource

DEFAULT_MODEL_ID = "nvidia/NV-Reason-CXR-3B"
# The revision NVIDIA's own wrapper pins; recorded in every artefact made with the default.
PINNED_REVISION = "056bd0383b35226554da9dc5866e095df174ae19"
# What a result records when nothing names the weights: a local model that no revision,
# pin or cache snapshot identifies; a server that does not say what it serves.
UNPINNED = "unpinned"
UNREPORTED = "unreported"
# A Hugging Face cache snapshot: .../snapshots/<40-hex commit>[/...] (the layout
# transformers' extract_commit_hash reads).
_SNAPSHOT = re.compile(r"(?:^|/)snapshots/([0-9a-f]{40})(?:/|$)")


def pinned_revision(model_id: str) -> str:
    """The pin for the default model, "" for any other (whose revision is whatever loads)."""
    return PINNED_REVISION if model_id == DEFAULT_MODEL_ID else ""


def snapshot_commit(path: str) -> str | None:
    """The commit a Hugging Face cache snapshot path names, or None for any other path."""
    match = _SNAPSHOT.search(path.replace("\\", "/"))
    return match.group(1) if match else None


@dataclass(frozen=True)
class Turn:
    """One chat turn; the image belongs to the first user turn of a conversation."""

    role: str  # "user" or "assistant"
    text: str


@dataclass(frozen=True)
class ModelRequest:
    image_png: bytes
    turns: tuple[Turn, ...]
    max_new_tokens: int
    # the engine's scheduling priority, lower first (vLLM's sense): live studies and
    # follow-ups 0, batch studies 9; a backend that schedules nothing ignores it
    priority: int = 0


@dataclass(frozen=True)
class Generation:
    text: str
    generated_tokens: int | None = None
    seconds: float = 0.0

    def hit_limit(self, max_new_tokens: int) -> bool:
        return self.generated_tokens is not None and self.generated_tokens >= max_new_tokens


@dataclass(frozen=True)
class BackendInfo:
    """Who produced a result; written into every artefact (mock is always said)."""

    name: str
    model_id: str
    model_revision: str
    is_mock: bool
    settings: dict[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return model_key(self)


def model_key(info: BackendInfo) -> str:
    """Which model made a result -- the only place this is spelled.

    It is part of every SR UID (the mock and the real model, or two revisions, never
    share one) and what a batch rerun compares to reuse a result, so the worker that
    stores a result and the gateway that looks for one must build it from the same
    ``BackendInfo`` (``models.registry.describe``).  Only the canonical backend name, the
    model id and the revision count: a device, a URL or a dtype is not another model.
    """
    return f"{info.name}|{info.model_id}@{info.model_revision}"


def identity_fields(info: BackendInfo) -> dict[str, object]:
    """The identity as a stored result payload records it (read back by stored_identity)."""
    return {"backend": info.name, "is_mock": info.is_mock, "model_id": info.model_id,
            "model_revision": info.model_revision}


def stored_identity(result: Mapping[str, Any]) -> BackendInfo:
    """The identity of a stored result payload, so its key is built as a live one is."""
    return BackendInfo(name=str(result.get("backend")), model_id=str(result.get("model_id")),
                       model_revision=str(result.get("model_revision")),
                       is_mock=bool(result.get("is_mock")))


def recorded_revision(info: BackendInfo) -> str | None:
    """The revision as a fact, None where the identity only says that none is known."""
    revision = info.model_revision
    return None if not revision or revision in (UNPINNED, UNREPORTED) else revision


class Backend(Protocol):
    @property
    def info(self) -> BackendInfo:
        """Who produces this backend's results (``models.registry.describe`` of its config)."""
        ...

    def generate(self, requests: Sequence[ModelRequest]) -> list[Generation]:
        """Run a batch; results in request order."""
        ...


class EngineBackend(Backend, Protocol):
    """A backend served by an engine that batches whatever it holds (``openai``): the GPU
    worker keeps many requests in flight on one event loop (``worker.pipeline.inflight``)."""

    model: str

    @property
    def metrics_url(self) -> str:
        """Where the engine publishes its Prometheus gauges (vLLM: ``/metrics``)."""
        ...

    def identify(self) -> BackendInfo:
        """The identity, asked of the server (once)."""
        ...

    def async_client(self, connections: int) -> ClientShards:
        """Pooled clients for the caller's event loop (the caller closes them)."""
        ...

    async def agenerate(self, client: ClientShards, req: ModelRequest,
                        image: ImageSource | None = None) -> Generation:
        """One request on that client; ``image``, when given, read as the body is sent."""
        ...


class BackendError(RuntimeError):
    """The backend could not produce output (transient unless ``permanent``); ``status`` is
    the server's HTTP status when it answered one (429/503 tell the in-flight window that
    the engine is full)."""

    def __init__(self, message: str, permanent: bool = False, status: int | None = None
                 ) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.status = status
