"""Shared fixtures (test data and real peers: dcmtk storescp, `serve`) and the two tiers.

The fast tier is ``pytest -m "not integration"``: tests that run in this process alone.
A test is ``integration`` when it starts another process (``serve``, a worker, the CLI,
dcmtk, dciodvfy, Orthanc, Redis, PostgreSQL, Chromium), opens a TCP server, or loads the
model stack (torch and transformers: seconds of imports; the tiny Qwen is built on them).
Three things keep a test in the right tier: a module's own ``pytestmark``; the fixtures
below that start peers (a test that asks for one is marked here, at collection); and a
guard that fails a fast-tier test that spawns a process or binds a TCP port all the same
(an audit hook: it watches, it changes nothing), so a new test cannot slip into the fast
tier by accident.
"""

from __future__ import annotations

import os
import socket
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings as hypothesis_settings

from tests.peers import Serve, StoreSCP, sample_file

INTEGRATION = "integration"
# Fixtures that start a peer or load the tiny model: asking for one makes a test integration.
PEER_FIXTURES = frozenset({"serve_factory", "storescp", "tiny_qwen", "tiny_qwen_labels",
                           "vllm_standin", "redis", "pg_url"})
# What the guard counts as leaving this process (sys.audit events) ...
_SPAWN_EVENTS = frozenset({"subprocess.Popen", "os.posix_spawn", "os.fork", "os.exec"})
# ... but for the programs ctypes.util.find_library asks where a shared library is (torch
# and others do it on import): a library finding its .so, not a test starting a peer.
# matplotlib's font manager runs fc-list once, when it first builds its font cache (a fresh
# machine, or a new matplotlib): a library finding its fonts.
_LIBRARY_LOOKUPS = frozenset({"ldconfig", "gcc", "cc", "ld", "objdump", "fc-list"})
# Compiled test modules (after pytest's assertion rewriting) and product modules kept in the
# temporary folder, even where the environment says PYTHONDONTWRITEBYTECODE: without them
# every run recompiles ~150 modules (4 s of the fast tier), and the checkout stays clean.
sys.dont_write_bytecode = False
sys.pycache_prefix = sys.pycache_prefix or os.path.join(tempfile.gettempdir(),
                                                        "cxr-gateway-pycache")


def pytest_configure(config: pytest.Config) -> None:
    """The fuzz budget: the full run hunts with ``FUZZ_EXAMPLES`` (300) examples a
    target; the fast tier runs each target on a smaller sample, unless that variable says.
    (No ``CXR_`` prefix: that namespace is the product's settings, and ``cxr-gateway``
    warns about a ``CXR_`` variable that names none.)"""
    full = int(os.environ.get("FUZZ_EXAMPLES", "300"))
    hypothesis_settings.register_profile("full", max_examples=full)
    hypothesis_settings.register_profile(
        "fast", max_examples=full if "FUZZ_EXAMPLES" in os.environ else min(full, 20))
    hypothesis_settings.load_profile("fast" if _fast_tier(config) else "full")


def _fast_tier(config: pytest.Config) -> bool:
    return " ".join(str(config.option.markexpr).split()) == f"not {INTEGRATION}"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if PEER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(INTEGRATION)


class _TierGuard:
    """Records what a fast-tier test does that belongs to the integration tier."""

    def __init__(self) -> None:
        self.watching: list[str] | None = None  # the current fast-tier test's findings

    def audit(self, event: str, args: tuple[Any, ...]) -> None:
        seen = self.watching
        if seen is None:
            return
        if event in _SPAWN_EVENTS and _program(args) not in _LIBRARY_LOOKUPS:
            seen.append(f"started a process ({event}: {str(args[:2])[:120]})")
        elif event == "socket.bind" and getattr(args[0], "family", None) in (
                socket.AF_INET, socket.AF_INET6):
            seen.append(f"opened a TCP port ({args[1]})")


def _program(args: tuple[Any, ...]) -> str:
    """The program's file name in a spawn event's arguments ("" for a bare fork)."""
    try:
        return Path(os.fsdecode(args[0])).name
    except (IndexError, TypeError):
        return ""


_GUARD = _TierGuard()
sys.addaudithook(_GUARD.audit)  # audit hooks cannot be removed: this one only records


@pytest.fixture(autouse=True)
def _stays_in_its_tier(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test outside the integration tier that starts a process or a server."""
    if request.node.get_closest_marker(INTEGRATION) is not None:
        yield
        return
    seen: list[str] = []
    _GUARD.watching = seen
    try:
        yield
    finally:
        _GUARD.watching = None
    if seen:
        pytest.fail(f"{request.node.nodeid} {seen[0]} but is not marked integration: add "
                    "@pytest.mark.integration (or use a peer fixture from tests/conftest.py)",
                    pytrace=False)


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
    from tests.random_qwen import build_checkpoint

    return build_checkpoint(tmp_path_factory.mktemp("tiny-qwen"), size="tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_qwen_labels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Qwen forced to answer ``ForcedReplies()`` (labels, then a report), so the
    local backend's report turn runs for real."""
    from tests.random_qwen import ForcedReplies, build_checkpoint

    return build_checkpoint(tmp_path_factory.mktemp("tiny-qwen-labels"), size="tiny",
                            forced=ForcedReplies())


@pytest.fixture
def vllm_standin() -> Iterator[object]:
    """A started in-process vLLM stand-in (tests/vllm_standin.py); ``.reset(capacity=...,
    latency=..., fail_first=...)`` reconfigures it; ``start_subprocess`` runs one as a peer."""
    from tests.vllm_standin import VLLMStandin

    srv = VLLMStandin().start()
    yield srv
    srv.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def database_env(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """The environment that puts a real serve on SQLite (nothing) or on a fresh
    PostgreSQL database (``CXR_DATABASE_URL``), dropped afterwards."""
    if request.param == "sqlite":
        yield {}
        return
    from tests.peers import fresh_database

    url, drop = fresh_database()
    try:
        yield {"CXR_DATABASE_URL": url}
    finally:
        drop()
