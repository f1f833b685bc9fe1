"""The ``openai`` backend: an OpenAI-compatible chat-completions server (e.g. vLLM).

Lets a site serve the model apart from the workers.  The conversation is sent as chat
messages with the image as a data URL in the first user turn; temperature 0 for
greedy decoding.  A batch is sent as concurrent requests so the server's continuous
batching sees them together.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from models.backend import (
    UNREPORTED,
    BackendError,
    BackendInfo,
    Generation,
    ModelRequest,
    snapshot_commit,
)
from models.http_status import is_permanent_http_status


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


class OpenAIBackend:
    # Each request stands alone and the server batches what it holds, so the GPU worker
    # keeps CXR_OPENAI_MAX_IN_FLIGHT studies in flight (models.study.serves_concurrently).
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

    def _one(self, req: ModelRequest) -> Generation:
        self.identify()
        start = time.perf_counter()
        body = http_json(f"{self.base_url}/v1/chat/completions", {
            "model": self.model, "messages": self.messages(req),
            "max_tokens": req.max_new_tokens, "temperature": 0,
        }, self.timeout, self.headers)
        try:
            choice = body["choices"][0]
            text = choice["message"]["content"] or ""
        except (KeyError, IndexError, TypeError) as exc:
            raise BackendError(f"unexpected chat-completions response: {exc}") from exc
        tokens = (body.get("usage") or {}).get("completion_tokens")
        if choice.get("finish_reason") == "length":
            tokens = max(int(tokens or 0), req.max_new_tokens)
        return Generation(text=text, generated_tokens=tokens,
                          seconds=time.perf_counter() - start)

    def generate(self, requests: Sequence[ModelRequest]) -> list[Generation]:
        """Requests in order; a batch goes out as concurrent requests, so the server's
        continuous batching sees them together (one alone needs no thread)."""
        if len(requests) == 1:
            return [self._one(requests[0])]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(requests) or 1)) as pool:
            return list(pool.map(self._one, requests))
