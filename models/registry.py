"""Backends by name, imported only when chosen (the mock needs no torch)."""

from __future__ import annotations

from models.backend import Backend

BACKENDS = ("mock",)


def get_backend(name: str, model_id: str = "nvidia/NV-Reason-CXR-3B",
                mock_latency_seconds: float = 0.0) -> Backend:
    if name == "mock":
        from models.mock import MockBackend

        return MockBackend(model_id, latency_seconds=mock_latency_seconds)
    raise ValueError(f"unknown or unavailable model backend {name!r} (available: "
                     f"{', '.join(BACKENDS)})")
