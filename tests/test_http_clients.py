"""The gateway's HTTP clients: one rule for "this HTTP error is permanent" in all of them,
WADO-RS retrieval that streams, STOW-RS that sends a streamed body, and the hf-space
client's pinned Gradio protocol.

The servers here are small loopback HTTP servers written for these unit tests (a real
Orthanc covers WADO-RS and STOW-RS end to end in tests/test_batch.py and
tests/test_orthanc.py); they exist to control what a real server will not: which status
comes back, and when the rest of a body is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from pydicom import Dataset, dcmread
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from dicom_gateway.transfer.destinations import Destination
from dicom_gateway.transfer.retrieve import RetrieveError, StudyQuery, qido_studies, wado_study
from dicom_gateway.transfer.sender import stow_rs
from models.backend import BackendError, ModelRequest, Turn
from models.hf_space import GRADIO_PROTOCOL, HFSpaceBackend
from models.http_status import describe_http_status, is_permanent_http_status
from models.openai_compat import OpenAIBackend
from tests.protocol_servers import gradio_space_server

# -- the rule -----------------------------------------------------------------------------

# Written out, not derived from the rule: the table is what the rule must say.
EXPECTED_PERMANENT = {
    400: True, 401: True, 403: True, 404: True, 405: True, 409: True, 413: True, 415: True,
    422: True, 408: False, 425: False, 429: False,
    500: False, 501: True, 502: False, 503: False, 504: False, 505: True, 599: False,
}


@pytest.mark.parametrize("code", sorted(EXPECTED_PERMANENT))
def test_the_one_rule_for_permanent_http_errors(code: int) -> None:
    assert is_permanent_http_status(code) is EXPECTED_PERMANENT[code]


def test_an_http_status_is_described_with_its_phrase() -> None:
    assert describe_http_status(409) == "HTTP 409 Conflict"
    assert describe_http_status(599) == "HTTP 599"


class _Quiet(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def handle(self) -> None:
        """A client that closes a kept-alive connection is normal here, not an error."""
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            super().handle()

    def _drain(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return _read_chunked(self.rfile)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _send(self, code: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _read_chunked(rfile: Any) -> bytes:
    out = bytearray()
    while True:
        size = int(rfile.readline().split(b";")[0].strip(), 16)
        if size == 0:
            rfile.readline()
            return bytes(out)
        out += rfile.read(size)
        rfile.readline()


class Loopback:
    """A ThreadingHTTPServer on a free loopback port, closed by ``close``."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def failing_server(code: int, paths: list[str]) -> Loopback:
    """Answers ``code`` to every request but a Gradio ``/config`` (so the hf-space client
    gets as far as its upload); records each request's path."""

    class Handler(_Quiet):
        def _answer(self) -> None:
            self._drain()
            paths.append(self.path)
            if self.path == "/config":
                self._send(200, json.dumps({"protocol": GRADIO_PROTOCOL,
                                            "api_prefix": "/gradio_api", "dependencies": [
                                                {"id": 0, "api_name": "chat"}]}).encode())
            else:
                self._send(code, b'{"error": "refused"}')

        do_GET = do_POST = _answer  # noqa: N815

    return Loopback(Handler)


def sr_like(n: int = 0, pixels: bytes = b"") -> Dataset:
    """A small valid Part 10 dataset (Secondary Capture), ``pixels`` bytes of pixel data."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.1"
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.2"
    ds.InstanceNumber = n
    ds.Modality = "OT"
    if pixels:
        columns = 1024 if len(pixels) % 1024 == 0 else len(pixels)
        ds.Rows, ds.Columns = len(pixels) // columns, columns
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated = ds.BitsStored = 8
        ds.HighBit, ds.PixelRepresentation = 7, 0
        ds.PixelData = pixels
    return ds


def part10(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _stow(url: str) -> bool:
    outcome = stow_rs([sr_like()], Destination(kind="stow", url=url), timeout=10)
    assert not outcome.ok
    return outcome.permanent


def _wado(url: str) -> bool:
    with pytest.raises(RetrieveError) as err:
        list(wado_study(url, "1.2.3", timeout=10))
    return err.value.permanent


def _qido(url: str) -> bool:
    with pytest.raises(RetrieveError) as err:
        list(qido_studies(url, StudyQuery(modality="CR")))
    return err.value.permanent


def _openai(url: str) -> bool:
    """The chat path as the GPU worker's feeder sends it (pooled async client), and the
    one-off client (``run``, follow-ups): both must read the status the same way."""
    backend = OpenAIBackend(url, "m", timeout=10, revision="0" * 40)
    request = ModelRequest(image_png=b"\x89PNG", turns=(Turn("user", "Findings?"),),
                           max_new_tokens=8)

    async def once() -> BackendError:
        async with backend.async_client(2) as client:
            with pytest.raises(BackendError) as err:
                await backend.agenerate(client, request)
            return err.value

    error = asyncio.run(once())
    assert error.status is not None
    return error.permanent


def _hf_space(url: str) -> bool:
    request = ModelRequest(image_png=b"\x89PNG", turns=(Turn("user", "Find abnormalities."),),
                           max_new_tokens=64)
    with pytest.raises(BackendError) as err:
        HFSpaceBackend(url, timeout=10).generate([request])
    return err.value.permanent


CLIENTS: dict[str, Callable[[str], bool]] = {
    "stow-rs": _stow, "wado-rs": _wado, "qido-rs": _qido, "openai": _openai,
    "hf-space": _hf_space}


@pytest.mark.integration  # loopback HTTP servers
@pytest.mark.parametrize("code", [400, 404, 408, 409, 429, 500, 501, 503])
@pytest.mark.parametrize("client", sorted(CLIENTS))
def test_every_http_client_applies_the_one_rule(client: str, code: int) -> None:
    paths: list[str] = []
    srv = failing_server(code, paths)
    try:
        assert CLIENTS[client](srv.url) is EXPECTED_PERMANENT[code], paths
        assert len([p for p in paths if p != "/config"]) == 1  # asked once: no hidden retry
    finally:
        srv.close()


# -- WADO-RS streams ------------------------------------------------------------------------

class GatedStudy:
    """A WADO-RS study whose body is sent in chunks (chunked transfer encoding): the first
    instance and the delimiter after it, then nothing until the test opens the gate."""

    BOUNDARY = "b0undary7f3a"

    def __init__(self, instances: list[bytes]) -> None:
        self.instances = instances
        self.gate = threading.Event()
        self.rest_sent = threading.Event()
        study = self

        class Handler(_Quiet):
            def do_GET(self) -> None:  # noqa: N802
                self.send_response(200)
                self.send_header("Content-Type", 'multipart/related; type="application/dicom"'
                                 f"; boundary={study.BOUNDARY}")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                head = b"Content-Type: application/dicom\r\n\r\n"
                delimiter = f"\r\n--{study.BOUNDARY}".encode()
                self._chunk(f"--{study.BOUNDARY}\r\n".encode() + head + study.instances[0]
                            + delimiter)
                study.gate.wait(60)  # a client that reads the whole body first waits here
                study.rest_sent.set()
                for data in study.instances[1:]:
                    self._chunk(b"\r\n" + head + data + delimiter)
                self._chunk(b"--\r\n")
                self.wfile.write(b"0\r\n\r\n")

            def _chunk(self, data: bytes) -> None:
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

        self.server = Loopback(Handler)


@pytest.mark.integration
def test_wado_rs_yields_an_instance_before_the_rest_of_the_study_is_sent() -> None:
    sent = [sr_like(n, pixels=bytes([n]) * 4096) for n in range(3)]
    study = GatedStudy([part10(ds) for ds in sent])
    try:
        parts = wado_study(f"{study.server.url}/dicom-web", "1.2.3", timeout=60)
        first = next(parts)
        assert not study.rest_sent.is_set(), "the first instance came only with the rest"
        study.gate.set()
        got = [first, *parts]
    finally:
        study.gate.set()
        study.server.close()
    assert [dcmread(io.BytesIO(p)).SOPInstanceUID for p in got] == \
        [ds.SOPInstanceUID for ds in sent]
    assert dcmread(io.BytesIO(got[2])).PixelData == bytes([2]) * 4096


def study_server(count: int, size: int) -> Loopback:
    """A WADO-RS study of ``count`` instances of ``size`` pixel bytes, each encoded only
    as it is sent (so the server's own memory stays one instance, like a real archive)."""
    boundary = "m3mb0undary"

    def body() -> Iterator[bytes]:
        for n in range(count):
            yield (f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
                   + part10(sr_like(n, pixels=bytes([n % 256]) * size)) + b"\r\n")
        yield f"--{boundary}--\r\n".encode()

    class Handler(_Quiet):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Type", 'multipart/related; type="application/dicom"'
                             f"; boundary={boundary}")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for data in body():
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")

    return Loopback(Handler)


def _retrieval_peak(count: int, size: int) -> int:
    """Peak traced memory (this process: the client and the loopback server) while a
    study of ``count`` instances is retrieved and each instance let go, as batch does."""
    srv = study_server(count, size)
    seen: list[int] = []
    tracemalloc.start()
    try:
        for data in wado_study(f"{srv.url}/dicom-web", "1.2.3", timeout=60):
            seen.append(len(data))
            del data
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        srv.close()
    assert len(seen) == count and min(seen) > size
    return peak


@pytest.mark.integration
def test_wado_rs_memory_does_not_grow_with_the_study() -> None:
    """Peak memory for a 24-instance study against a 4-instance one, measured alike: a
    client that held the body would need 20 MiB more; a streaming one about the same."""
    size = 1 << 20
    small, large = _retrieval_peak(4, size), _retrieval_peak(24, size)
    assert large - small < 20 * size / 4, \
        f"peak {small / 2**20:.1f} MiB for 4 MiB, {large / 2**20:.1f} MiB for 24 MiB"


# -- STOW-RS sends a streamed body -----------------------------------------------------------

@pytest.mark.integration
def test_stow_rs_streams_its_body_and_the_server_reads_every_instance() -> None:
    received: dict[str, Any] = {}

    class Handler(_Quiet):
        def do_POST(self) -> None:  # noqa: N802
            received["transfer-encoding"] = self.headers.get("Transfer-Encoding", "")
            received["content-type"] = self.headers.get("Content-Type", "")
            received["body"] = self._drain()
            self._send(200, b'{"00081199": {"vr": "SQ"}}', "application/dicom+json")

    srv = Loopback(Handler)
    datasets = [sr_like(n) for n in range(3)]
    try:
        outcome = stow_rs(datasets, Destination(kind="stow", url=f"{srv.url}/dicom-web"))
    finally:
        srv.close()
    assert outcome.ok and outcome.status == 200 and outcome.detail == "HTTP 200 OK"
    assert received["transfer-encoding"].lower() == "chunked"  # no Content-Length computed
    message = BytesParser().parsebytes(
        f"Content-Type: {received['content-type']}\r\n\r\n".encode() + received["body"])
    assert message.is_multipart()
    parts = [bytes(p.get_payload(decode=True)) for p in message.walk()
             if p.get_content_type() == "application/dicom"]
    assert [dcmread(io.BytesIO(p)).SOPInstanceUID for p in parts] == \
        [ds.SOPInstanceUID for ds in datasets]


# -- hf-space: the Gradio protocol it speaks is pinned ----------------------------------------

def _ask(url: str) -> str:
    request = ModelRequest(image_png=b"\x89PNG\r\n",
                           turns=(Turn("user", "Find abnormalities."),), max_new_tokens=64)
    return HFSpaceBackend(url, timeout=10).generate([request])[0].text


@pytest.mark.integration
def test_a_space_that_no_longer_offers_sse_v3_is_refused_by_name() -> None:
    srv = gradio_space_server(["never read"], {"protocol": "sse_v4", "version": "7.0.0"})
    try:
        with pytest.raises(BackendError) as err:
            _ask(srv.url)
    finally:
        srv.close()
    assert err.value.permanent
    assert "sse_v4" in str(err.value) and "7.0.0" in str(err.value) and "sse_v3" in str(err.value)
    assert [r[1] for r in srv.requests] == ["/config"]  # nothing sent to a protocol not spoken


@pytest.mark.integration
def test_a_newer_space_that_still_offers_sse_v3_is_used() -> None:
    srv = gradio_space_server(["<think> clear", " lungs </think><answer>No Finding</answer>"],
                              {"protocol": "sse_v4", "supported_protocols": ["sse_v3", "sse_v4"]})
    try:
        text = _ask(srv.url)
    finally:
        srv.close()
    assert text == "<think> clear lungs </think><answer>No Finding</answer>"


@pytest.mark.integration
def test_the_api_prefix_comes_from_the_space_config() -> None:
    """Gradio 4 serves the queue at the root (no api_prefix); the client follows it."""
    srv = gradio_space_server(["x"], {"api_prefix": None})
    try:
        with pytest.raises(BackendError):
            _ask(srv.url)  # this stand-in serves only /gradio_api/...: 404 at the root
    finally:
        srv.close()
    assert ("POST", "/upload") in [r[:2] for r in srv.requests]


def _replying(kind: str) -> Loopback:
    """A chat server whose reply is too big (8 MiB), or drips a byte a second."""

    class Handler(_Quiet):
        def do_POST(self) -> None:  # noqa: N802
            self._drain()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            if kind == "big":
                self.send_header("Content-Length", str(8 << 20))
                self.end_headers()
                for _ in range(8):
                    self.wfile.write(b" " * (1 << 20))
                return
            self.send_header("Content-Length", "1000")
            self.end_headers()
            for _ in range(1000):
                self.wfile.write(b" ")
                self.wfile.flush()
                time.sleep(1)

    return Loopback(Handler)


@pytest.mark.integration  # loopback HTTP servers
@pytest.mark.parametrize("kind", ["big", "dripping"])
def test_the_feeders_client_bounds_a_reply_in_size_and_in_time(kind: str) -> None:
    """What the engine writes back is read at most MAX_REPLY_BYTES and the backend's
    timeout in all: a study's request then fails (and its job is retried) instead of
    holding memory or its place without end."""
    srv = _replying(kind)
    backend = OpenAIBackend(srv.url, "m", timeout=3, revision="0" * 40)
    request = ModelRequest(image_png=b"\x89PNG", turns=(Turn("user", "Findings?"),),
                           max_new_tokens=8)

    async def once() -> BackendError:
        async with backend.async_client(2) as client:
            with pytest.raises(BackendError) as err:
                await backend.agenerate(client, request)
            return err.value

    try:
        error = asyncio.run(once())
    finally:
        srv.close()
    assert not error.permanent
    assert ("bytes" if kind == "big" else "within 3 s") in str(error)
