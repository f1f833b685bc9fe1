"""The backend interface: a batch of conversations with one image each in, texts out.

Every backend (local Transformers, mock, remote) takes the same requests, so the
worker batches across jobs without knowing which one runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

DEFAULT_MODEL_ID = "nvidia/NV-Reason-CXR-3B"
# The revision NVIDIA's own wrapper pins; recorded in every artefact made with the default.
PINNED_REVISION = "056bd0383b35226554da9dc5866e095df174ae19"


def pinned_revision(model_id: str) -> str:
    """The pin for the default model, "" for any other (whose revision is whatever loads)."""
    return PINNED_REVISION if model_id == DEFAULT_MODEL_ID else ""


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


class Backend(Protocol):
    info: BackendInfo

    def generate(self, requests: Sequence[ModelRequest]) -> list[Generation]:
        """Run a batch; results in request order."""
        ...


class BackendError(RuntimeError):
    """The backend could not produce output (transient unless ``permanent``)."""

    def __init__(self, message: str, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent
