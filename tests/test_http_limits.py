"""The HTTP service bounded against strangers (issue 31): a body over the limit is refused
with 413 while it arrives, before the token is checked; a head or a body that drips is cut
off; one client address holds a bounded number of connections; a reviewer's request is
answered meanwhile.  On a real serve, with real sockets."""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.peers import wait_until

pytestmark = pytest.mark.integration  # a real serve

LIMITS = {"CXR_API_HEADER_SECONDS": "2", "CXR_API_BODY_SECONDS": "2",
          "CXR_API_CONNECTIONS_PER_CLIENT": "4", "CXR_MODEL_BACKEND": "mock"}


@pytest.fixture
def srv(serve_factory: Any) -> Any:
    return serve_factory.new(LIMITS).start()


def connect(srv: Any, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", srv.api_port), timeout=60,
                                    source_address=(source, 0))
    return sock


def answer(sock: socket.socket) -> tuple[int, bytes]:
    """The status and body the server sent before it closed (or the empty answer)."""
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    if not data:
        return 0, b""
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def token_of(srv: Any) -> str:
    return str((srv.data_dir / "api-token").read_text().strip())


def reviewer_request(srv: Any) -> int:
    req = urllib.request.Request(f"http://127.0.0.1:{srv.api_port}/api/overview",
                                 headers={"Authorization": f"Bearer {token_of(srv)}"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        return int(resp.status)


def test_a_huge_declared_body_without_a_token_is_refused_413_before_it_is_read(srv: Any) -> None:
    sock = connect(srv)
    sock.sendall(b"POST /api/jobs/1/questions HTTP/1.1\r\nHost: x\r\n"
                 b"Content-Type: application/json\r\nContent-Length: 1073741824\r\n\r\n"
                 + b"{" * 1000)
    status, body = answer(sock)
    assert status == 413, body
    assert "limit of 65536 bytes" in json.loads(body)["detail"]


def test_a_chunked_body_past_the_limit_is_cut_off_413(srv: Any) -> None:
    sock = connect(srv)
    sock.sendall(b"POST /api/jobs/1/questions HTTP/1.1\r\nHost: x\r\n"
                 b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"x" * 16384
    try:
        for _ in range(8):  # 128 KiB, twice the limit
            sock.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server answered and closed first
    status, _ = answer(sock)
    assert status == 413


def test_a_small_body_without_a_token_is_401(srv: Any) -> None:
    sock = connect(srv)
    body = b'{"question": "x"}'
    sock.sendall(b"POST /api/jobs/1/questions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                 b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
                 + body)
    assert answer(sock)[0] == 401


def test_a_dripping_head_is_closed_and_a_reviewer_is_answered_meanwhile(srv: Any) -> None:
    drips = [connect(srv, f"127.0.0.{n}") for n in range(2, 12)]
    for sock in drips:
        sock.sendall(b"GET /api/overview HTTP/1.1\r\n")
    started = time.monotonic()
    assert reviewer_request(srv) == 200

    def all_closed() -> bool:
        for sock in drips:
            try:
                sock.sendall(b"X")  # one more byte of the head, as a dripping client does
            except (BrokenPipeError, ConnectionResetError):
                continue
            sock.settimeout(0.2)
            try:
                if sock.recv(1) == b"":
                    continue
            except TimeoutError:
                return False
            except ConnectionResetError:
                continue
        return True

    wait_until(all_closed, "the dripping heads closed", timeout=120)
    assert time.monotonic() - started >= 1.5  # they were given their time, not refused at once


def test_a_dripping_body_is_answered_408(srv: Any) -> None:
    sock = connect(srv)
    sock.sendall(b"POST /api/jobs/1/questions HTTP/1.1\r\nHost: x\r\n"
                 b"Authorization: Bearer " + token_of(srv).encode() + b"\r\n"
                 b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
    status, body = answer(sock)
    assert status == 408, body


def test_one_address_holds_a_bounded_number_of_connections(srv: Any) -> None:
    held = [connect(srv, "127.0.0.9") for _ in range(4)]
    for sock in held:
        sock.sendall(b"GET /api/ove")  # open, head incomplete
    # accepted in order: by the time the fifth is, the four before it are counted
    extra = connect(srv, "127.0.0.9")
    status, body = answer(extra)
    assert status == 429, body
    assert reviewer_request(srv) == 200  # another address is served as usual
    for sock in held:
        sock.close()

    def served_again() -> bool:
        sock = connect(srv, "127.0.0.9")
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        return answer(sock)[0] == 200

    wait_until(served_again, "the address served once its connections closed")


def test_the_limits_are_settings(tmp_path: Path) -> None:
    from worker.ops.api.limits import HttpLimits
    from worker.settings import load_settings

    limits = HttpLimits.of(load_settings(None, {"CXR_API_MAX_BODY_KB": "8",
                                                "CXR_API_CONNECTIONS_PER_CLIENT": "2"},
                                         data_dir=tmp_path))
    assert (limits.max_body_bytes, limits.max_connections_per_client) == (8192, 2)
