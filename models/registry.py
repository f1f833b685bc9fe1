"""Backends by name, each imported only when chosen (the mock needs no torch).

``describe`` says which model a configuration's results will come from without loading
any weights, so a batch on a gateway node (no torch) knows which stored results it may
reuse; each backend builds its own ``info`` with the same function, so the two agree.
"""

from __future__ import annotations

from dataclasses import dataclass

from models.backend import DEFAULT_MODEL_ID, Backend, BackendInfo

BACKENDS = ("mock", "local", "openai", "hf-space")
ALIASES = {"hf-space-api": "hf-space"}


@dataclass(frozen=True)
class BackendConfig:
    name: str = "mock"
    model_id: str = DEFAULT_MODEL_ID
    revision: str | None = None
    device: str = "auto"
    allow_cpu: bool = False
    torch_dtype: str = "auto"
    local_files_only: bool = False
    mock_latency_seconds: float = 0.0
    mock_response: str | None = None
    mock_labels: tuple[str, ...] = ()
    openai_url: str = ""
    openai_api_key: str = ""
    hf_space_url: str = ""
    timeout_seconds: float = 300.0


def canonical(name: str) -> str:
    return ALIASES.get(name, name)


def describe(cfg: BackendConfig) -> BackendInfo:
    """The identity of the backend ``cfg`` configures, cheaply: no weights, no torch (the
    openai backend asks its server's ``/v1/models`` unless a revision is declared, and
    raises a transient BackendError when it cannot)."""
    name = canonical(cfg.name)
    if name == "mock":
        from models.mock import describe_mock

        return describe_mock(cfg.model_id, cfg.revision, cfg.mock_labels)
    if name == "local":
        from models.local import describe_local

        return describe_local(cfg.model_id, cfg.revision)
    if name == "openai":
        from models.openai_compat import describe_server

        return describe_server(cfg.openai_url, cfg.model_id, cfg.revision, cfg.openai_api_key,
                               cfg.timeout_seconds)
    if name == "hf-space":
        from models.hf_space import DEFAULT_SPACE_URL, describe_space

        return describe_space(cfg.hf_space_url or DEFAULT_SPACE_URL)
    raise ValueError(f"unknown model backend {cfg.name!r} (available: {', '.join(BACKENDS)})")


def get_backend(cfg: BackendConfig) -> Backend:
    name = canonical(cfg.name)
    if name == "mock":
        from models.mock import MockBackend

        return MockBackend(cfg.model_id, latency_seconds=cfg.mock_latency_seconds,
                           response=cfg.mock_response, labels=cfg.mock_labels,
                           revision=cfg.revision)
    if name == "local":
        from models.local import LocalBackend, LocalOptions

        return LocalBackend(LocalOptions(
            model_id=cfg.model_id, revision=cfg.revision, device=cfg.device,
            allow_cpu=cfg.allow_cpu, torch_dtype=cfg.torch_dtype,
            local_files_only=cfg.local_files_only,
        ))
    if name == "openai":
        from models.openai_compat import OpenAIBackend

        return OpenAIBackend(cfg.openai_url, cfg.model_id, cfg.openai_api_key,
                             cfg.timeout_seconds, revision=cfg.revision)
    if name == "hf-space":
        from models.hf_space import DEFAULT_SPACE_URL, HFSpaceBackend

        return HFSpaceBackend(cfg.hf_space_url or DEFAULT_SPACE_URL, cfg.timeout_seconds)
    raise ValueError(f"unknown model backend {cfg.name!r} (available: {', '.join(BACKENDS)})")
