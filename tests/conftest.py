"""Shared fixtures: test data and real peers (dcmtk storescp, `serve`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.peers import Serve, StoreSCP, sample_file


@pytest.fixture(scope="session")
def rg1() -> Path:
    return sample_file("RG1_UNCR.dcm")


@pytest.fixture
def storescp(tmp_path: Path) -> Iterator[StoreSCP]:
    scp = StoreSCP(tmp_path)
    yield scp
    scp.stop()


@pytest.fixture
def serve_factory(tmp_path: Path) -> Iterator[type]:
    started: list[Serve] = []

    class Factory:
        @staticmethod
        def new(env: dict[str, str] | None = None, data_dir: Path | None = None) -> Serve:
            srv = Serve(data_dir or tmp_path / "gateway", env or {})
            started.append(srv)
            return srv

    yield Factory
    for srv in started:
        srv.stop()


@pytest.fixture(scope="session")
def tiny_qwen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight Qwen2.5-VL built here (same classes, processor and chat template)."""
    from models.random_qwen import build_checkpoint

    return build_checkpoint(tmp_path_factory.mktemp("tiny-qwen"), size="tiny", seed=0)
