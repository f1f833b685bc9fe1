"""The two tiers (tests/conftest.py): a fast-tier test that starts a process or a server
fails and says how to fix it; asking for a peer fixture moves a test to integration."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.peers import ROOT

pytestmark = pytest.mark.integration  # runs pytest as a subprocess

INNER = '''
import socket
import subprocess

import pytest


def test_pure():
    assert sum([1, 2]) == 3


def test_starts_a_process():
    subprocess.run(["true"], check=True)


def test_opens_a_port():
    with socket.create_server(("127.0.0.1", 0)):
        pass


@pytest.mark.integration
def test_marked():
    subprocess.run(["true"], check=True)


def test_asks_for_a_peer(storescp):
    pass
'''


def test_the_fast_tier_refuses_what_belongs_to_integration(tmp_path: Path) -> None:
    (tmp_path / "test_inner.py").write_text(INNER)
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:randomly",
         "-p", "no:cacheprovider", "-m", "not integration", "-q", "-rA",
         str(tmp_path / "test_inner.py")],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    text = out.stdout + out.stderr
    assert out.returncode == 1, text
    # the marked test and the one with a peer fixture are not in the fast tier at all
    assert "2 deselected" in text and "test_marked" not in text and "test_asks" not in text
    # "ERROR path::name" or, on a wide terminal, "ERROR path::name - Failed: why"
    errors = sorted(ln.split()[1].rsplit("::", 1)[1] for ln in text.splitlines()
                    if ln.startswith("ERROR "))
    assert errors == ["test_opens_a_port", "test_starts_a_process"], text
    for name, what in (("test_starts_a_process", "started a process"),
                       ("test_opens_a_port", "opened a TCP port")):
        assert f"test_inner.py::{name} {what}" in text, text
    assert "is not marked integration: add @pytest.mark.integration" in text
