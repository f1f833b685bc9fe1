"""The pynetdicom internals the listener relies on, and what they buy: no partial files."""

from __future__ import annotations

import contextlib
import importlib
import inspect
import socket
import threading
import time
from pathlib import Path

import pytest

from dicom_gateway.pynetdicom_compat import RELIES_ON
from tests.peers import free_port
from tests.test_end_to_end import assert_stored


def _resolve(dotted: str) -> object:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            obj = getattr(obj, name)
        return obj
    raise ImportError(dotted)


@pytest.mark.parametrize("dotted", sorted(RELIES_ON))
def test_the_pynetdicom_code_we_rely_on_is_unchanged(dotted: str) -> None:
    """Fails when an upgrade of pynetdicom changes what dicom_gateway/pynetdicom_compat.py
    reads: review that module against the new code, then update RELIES_ON."""
    source = inspect.getsource(_resolve(dotted))  # type: ignore[arg-type]
    for needle in RELIES_ON[dotted]:
        assert needle in source, f"{dotted} no longer contains {needle!r}"


class CuttingProxy:
    """Forwards a sender to the gateway and cuts the connection after ``limit`` bytes:
    a peer that drops mid-transfer, as a failing network or a killed sender does."""

    def __init__(self, target_port: int, limit: int) -> None:
        self.port, self.target, self.limit = free_port(), target_port, limit
        self.server = socket.create_server(("127.0.0.1", self.port))
        self.cut = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        client, _ = self.server.accept()
        upstream = socket.create_connection(("127.0.0.1", self.target))

        def back() -> None:
            try:
                while data := upstream.recv(65536):
                    client.sendall(data)
            except OSError:
                pass

        threading.Thread(target=back, daemon=True).start()
        sent = 0
        try:
            while sent < self.limit and (data := client.recv(65536)):
                data = data[: self.limit - sent]
                upstream.sendall(data)
                sent += len(data)
        finally:
            for s in (upstream, client):  # shutdown wakes the other thread's recv now
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
            self.cut.set()


@pytest.mark.integration
def test_a_dropped_association_leaves_no_partial_file(serve_factory, rg1: Path) -> None:
    srv = serve_factory.new().start()
    proxy = CuttingProxy(srv.port, limit=3_000_000)  # RG1 is 7.2 MB: cut mid-pixels
    out = srv.storescu(rg1, extra=("-v",), port=proxy.port)
    assert proxy.cut.wait(30)
    assert "Store Response (Success)" not in out.stderr
    tmp = srv.data_dir / "spool" / ".tmp"
    deadline = time.monotonic() + 5
    while list(tmp.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert list(tmp.iterdir()) == []  # removed when the association ended, not at restart
    assert "partial dataset removed" in srv.log.read_text()
    assert not list((srv.data_dir / "spool").rglob("*.dcm"))
    assert_stored(srv.storescu(rg1, extra=("-v",)))  # and it keeps serving
