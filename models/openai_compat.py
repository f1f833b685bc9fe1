"""The ``openai`` backend: an OpenAI-compatible chat-completions server (e.g. vLLM).

Lets a site serve the model apart from the workers.  The conversation is sent as chat
messages with the image as a data URL in the first user turn; temperature 0 for
greedy decoding, and the request's ``priority`` (vLLM's field: honoured under
``--scheduling-policy priority``, ignored otherwise) so live studies pass batch ones
inside the engine.  Requests go through httpx, pooled and kept alive: a synchronous
client for the one-off callers (``run``, follow-ups, a batch of a few) and, for the GPU
worker's in-flight loop, an asynchronous one it owns on its own event loop
(``worker.pipeline.inflight``), so a thousand studies in flight cost no thousand threads.
Timeouts and the permanent/transient rule are ours (``models.http_status``).
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx

from models.backend import (
    UNREPORTED,
    BackendError,
    BackendInfo,
    Generation,
    ModelRequest,
    snapshot_commit,
)
from models.http_status import is_permanent_http_status

BASE64_SLICE = 3 * 16384  # image bytes per streamed piece (a multiple of 3)
# a reply of 4,096 tokens is tens of KB: a bigger one is a server's fault, not an answer
MAX_REPLY_BYTES = 4 << 20


def http_json(url: str, payload: dict[str, Any] | None, timeout: float,
              headers: dict[str, str] | None = None) -> Any:
    """POST (or GET without payload) JSON; an HTTP error is permanent by models.http_status."""
    data = None if payload is None else json.dumps(payload).encode()
    req = urllib.request.Request(url, data=data, method="GET" if data is None else "POST",
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read().decode())
    except urllib.error.HTTPError as exc:
        body = exc.read().decode(errors="replace")[:300]
        raise BackendError(f"{url}: HTTP {exc.code}: {body}",
                           permanent=is_permanent_http_status(exc.code)) from exc
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        raise BackendError(f"{url}: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise BackendError(f"{url}: response is not JSON: {exc}") from exc


def served_revision(base_url: str, model: str, timeout: float,
                    headers: dict[str, str] | None = None) -> str:
    """The commit the server says it serves ``model`` from: vLLM's ``/v1/models`` ``root``
    when that is a Hugging Face snapshot path; "unreported" when it names none (a repo id,
    a plain folder) or the server has no such endpoint.  A transient failure raises."""
    try:
        body = http_json(f"{base_url.rstrip('/')}/v1/models", None, timeout, headers)
    except BackendError as exc:
        if exc.permanent:
            return UNREPORTED
        raise
    entries = body.get("data") if isinstance(body, dict) else None
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict) and entry.get("id") == model:
            return snapshot_commit(str(entry.get("root") or "")) or UNREPORTED
    return UNREPORTED


def describe_server(base_url: str, model: str, revision: str | None = None,
                    api_key: str = "", timeout: float = 30.0) -> BackendInfo:
    """The openai backend's identity: the revision the site declares (CXR_MODEL_REVISION),
    else the one the server reports.  Never the server's address: the revision lands in
    the SR's Algorithm Version, a PACS object, where an internal address has no place
    (and moving the server does not make it another model)."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    return BackendInfo(
        name="openai", model_id=model, is_mock=False, settings={"temperature": "0"},
        model_revision=revision or served_revision(base_url, model, min(timeout, 30.0),
                                                   headers))


@dataclass(frozen=True)
class ImageSource:
    """A request's PNG, read when its body is sent (the GPU worker reads it from the job's
    row), and its size, known before (the body's length is declared up front)."""

    size: int
    read: Callable[[], Awaitable[bytes]]


class ClientShards:
    """Keep-alive connections to one server for one event loop, as several small httpx
    pools, each request on the least busy.

    Why not one pool: httpcore 1.0's ``AsyncConnectionPool`` walks every connection (and
    polls each idle one's socket) for every request it queues or releases, so with a few
    hundred kept alive the walk costs more than the requests: measured here, 128 requests
    on 128 reused connections reached the server spread over 3-4 s instead of at once
    (encode/httpx#3215 reports the same).  Shards of ``SHARD`` connections keep each walk
    short; the connections are still pooled and kept alive, the timeouts still ours.
    """

    SHARD = 32

    def __init__(self, connections: int, options: dict[str, Any]) -> None:
        self.count = max(1, math.ceil(connections / self.SHARD))
        # each shard may open a few more than its share, so an uneven moment never queues;
        # one TLS context for all (httpx builds one per client otherwise: 25 ms each)
        self._options = {"verify": httpx.create_ssl_context(), **options,
                         "limits": httpx.Limits(max_connections=2 * self.SHARD,
                                                max_keepalive_connections=2 * self.SHARD)}
        self.shards: list[httpx.AsyncClient] = []
        self.busy: list[int] = []

    def _least_busy(self) -> int:
        """The shard with fewest requests; a new one while all have a shard's worth."""
        if self.shards:
            i = min(range(len(self.shards)), key=self.busy.__getitem__)
            if self.busy[i] < self.SHARD or len(self.shards) >= self.count:
                return i
        self.shards.append(httpx.AsyncClient(**self._options))
        self.busy.append(0)
        return len(self.shards) - 1

    async def __aenter__(self) -> ClientShards:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        for client in self.shards:
            await client.aclose()

    async def post(self, url: str, content: Any, headers: dict[str, str],
                   total: float) -> httpx.Response:
        """One POST whose reply is read whole, at most ``MAX_REPLY_BYTES`` and ``total``
        seconds in all (httpx's timeouts are per read: a server dripping a byte at a time
        would otherwise hold a study without end)."""
        i = self._least_busy()
        self.busy[i] += 1
        try:
            async with asyncio.timeout(total):
                async with self.shards[i].stream("POST", url, content=content,
                                                 headers=headers) as response:
                    body = bytearray()
                    async for chunk in response.aiter_bytes():
                        body += chunk
                        if len(body) > MAX_REPLY_BYTES:
                            raise BackendError(f"{url}: reply over {MAX_REPLY_BYTES} bytes")
                    return httpx.Response(response.status_code, headers=response.headers,
                                          content=bytes(body))
        except TimeoutError as exc:
            raise BackendError(f"{url}: no whole reply within {total:g} s") from exc
        finally:
            self.busy[i] -= 1


class OpenAIBackend:
    # Each request stands alone and the server batches what it holds, so the GPU worker
    # keeps many studies in flight, sized by the engine (worker.pipeline.inflight).
    concurrent_requests = True

    def __init__(self, base_url: str, model: str, api_key: str = "", timeout: float = 300.0,
                 concurrency: int = 8, revision: str | None = None) -> None:
        if not base_url:
            raise BackendError("the openai backend needs a server URL (CXR_OPENAI_URL)",
                               permanent=True)
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.timeout = timeout
        self.concurrency = max(1, concurrency)
        self.api_key = api_key
        self.declared_revision = revision or None
        self._identity: BackendInfo | None = None
        self._identity_lock = threading.Lock()
        self._client: httpx.Client | None = None
        self._client_lock = threading.Lock()

    @property
    def chat_url(self) -> str:
        return f"{self.base_url}/v1/chat/completions"

    @property
    def metrics_url(self) -> str:
        """Where vLLM publishes its Prometheus metrics: the server's root, not under /v1."""
        return f"{self.base_url}/metrics"

    def identify(self) -> BackendInfo:
        """The identity, asked of the server once (every request asks first, so no result
        is ever stored under a provisional one)."""
        with self._identity_lock:
            if self._identity is None:
                self._identity = describe_server(self.base_url, self.model,
                                                 self.declared_revision, self.api_key,
                                                 self.timeout)
            return self._identity

    @property
    def info(self) -> BackendInfo:
        """The identity; while the server cannot be asked, a provisional one for display."""
        try:
            return self.identify()
        except BackendError:
            return BackendInfo(name="openai", model_id=self.model, is_mock=False,
                               model_revision=self.declared_revision or UNREPORTED)

    @staticmethod
    def messages(req: ModelRequest) -> list[dict[str, Any]]:
        url = "data:image/png;base64," + base64.b64encode(req.image_png).decode("ascii")
        out: list[dict[str, Any]] = []
        for i, turn in enumerate(req.turns):
            if i == 0:
                out.append({"role": turn.role, "content": [
                    {"type": "image_url", "image_url": {"url": url}},
                    {"type": "text", "text": turn.text},
                ]})
            else:
                out.append({"role": turn.role, "content": turn.text})
        return out

    def request_body(self, req: ModelRequest) -> bytes:
        """The chat-completions body, serialised once (the image is most of it)."""
        return json.dumps(self._payload(req, self.messages(req))).encode()

    def _payload(self, req: ModelRequest, messages: list[dict[str, Any]]) -> dict[str, Any]:
        return {"model": self.model, "messages": messages, "max_tokens": req.max_new_tokens,
                "temperature": 0, "priority": req.priority}

    def streamed_body(self, req: ModelRequest, image: ImageSource | None = None
                      ) -> tuple[int, AsyncIterator[bytes]]:
        """The same body, its length and its bytes made as they are sent: the image's
        base64 (a third larger than the PNG) never exists whole.  With ``image``, the
        PNG is read only when the body is sent and let go once it is, instead of
        ``req.image_png``: a thousand studies in flight then hold no images while the
        engine generates (a client holds the body it was given until the reply)."""
        size = len(req.image_png) if image is None else image.size
        marker = "cxr-image-" + uuid.uuid4().hex
        with_marker = self.messages(ModelRequest(b"", req.turns, req.max_new_tokens))
        if with_marker and isinstance(with_marker[0]["content"], list):
            with_marker[0]["content"][0]["image_url"]["url"] += marker
        head, _, tail = json.dumps(self._payload(req, with_marker)).partition(marker)
        prefix, suffix = head.encode(), tail.encode()
        length = len(prefix) + 4 * math.ceil(size / 3) + len(suffix)
        inline = req.image_png if image is None else None

        async def parts() -> AsyncIterator[bytes]:
            yield prefix
            png = inline if inline is not None else await image.read()  # type: ignore[union-attr]
            if len(png) != size:
                raise BackendError(f"the model input is {len(png)} bytes, not {size}")
            for start in range(0, size, BASE64_SLICE):  # whole 3-byte groups
                yield base64.b64encode(png[start:start + BASE64_SLICE])
            del png
            yield suffix
        return length, parts()

    def client_options(self) -> dict[str, Any]:
        """What every client of this server shares: our timeout (a slow answer is not an
        error until then), our headers, and no retries of its own (retries are ours)."""
        return {"timeout": httpx.Timeout(self.timeout, connect=min(self.timeout, 30.0)),
                "headers": {"Content-Type": "application/json", **self.headers},
                "follow_redirects": False}

    def async_client(self, connections: int) -> ClientShards:
        """Pooled clients for one event loop (the caller owns and closes them)."""
        return ClientShards(connections, self.client_options())

    def _sync_client(self) -> httpx.Client:
        with self._client_lock:
            if self._client is None:
                self._client = httpx.Client(**self.client_options(), limits=httpx.Limits(
                    max_connections=self.concurrency,
                    max_keepalive_connections=self.concurrency))
            return self._client

    def generation(self, response: httpx.Response, req: ModelRequest,
                   seconds: float) -> Generation:
        """The reply as a Generation, or the BackendError its status or shape says."""
        if response.status_code >= 400:
            raise BackendError(f"{self.chat_url}: HTTP {response.status_code}: "
                               f"{response.text[:300]}",
                               permanent=is_permanent_http_status(response.status_code),
                               status=response.status_code)
        try:
            body = response.json()
            choice = body["choices"][0]
            text = choice["message"]["content"] or ""
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise BackendError(f"unexpected chat-completions response: "
                               f"{type(exc).__name__}: {exc}") from exc
        tokens = (body.get("usage") or {}).get("completion_tokens")
        if choice.get("finish_reason") == "length":
            tokens = max(int(tokens or 0), req.max_new_tokens)
        return Generation(text=text, generated_tokens=tokens, seconds=seconds)

    async def agenerate(self, client: ClientShards, req: ModelRequest,
                        image: ImageSource | None = None) -> Generation:
        """One request on the caller's event loop (``identify`` must have been asked);
        ``image`` as for ``streamed_body``."""
        start = time.perf_counter()
        length, body = self.streamed_body(req, image)
        try:
            response = await client.post(self.chat_url, content=body,
                                         headers={"Content-Length": str(length)},
                                         total=self.timeout)
        except httpx.HTTPError as exc:
            raise BackendError(f"{self.chat_url}: {type(exc).__name__}: {exc}") from exc
        return self.generation(response, req, time.perf_counter() - start)

    def _one(self, req: ModelRequest) -> Generation:
        self.identify()
        start = time.perf_counter()
        try:
            response = self._sync_client().post(self.chat_url, content=self.request_body(req))
        except httpx.HTTPError as exc:
            raise BackendError(f"{self.chat_url}: {type(exc).__name__}: {exc}") from exc
        return self.generation(response, req, time.perf_counter() - start)

    def generate(self, requests: Sequence[ModelRequest]) -> list[Generation]:
        """Requests in order; a batch goes out as concurrent requests, so the server's
        continuous batching sees them together (one alone needs no thread)."""
        if len(requests) == 1:
            return [self._one(requests[0])]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(requests) or 1)) as pool:
            return list(pool.map(self._one, requests))
