"""The ``openai`` backend: an OpenAI-compatible chat-completions server (e.g. vLLM).

Lets a site serve the model apart from the workers.  The conversation is sent as chat
messages with the image as a data URL in the first user turn; temperature 0 for
greedy decoding.  A batch is sent as concurrent requests so the server's continuous
batching sees them together.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from models.backend import BackendError, BackendInfo, Generation, ModelRequest


def http_json(url: str, payload: dict[str, Any] | None, timeout: float,
              headers: dict[str, str] | None = None) -> Any:
    """POST (or GET without payload) JSON; 4xx is permanent, anything else transient."""
    data = None if payload is None else json.dumps(payload).encode()
    req = urllib.request.Request(url, data=data, method="GET" if data is None else "POST",
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read().decode())
    except urllib.error.HTTPError as exc:
        body = exc.read().decode(errors="replace")[:300]
        raise BackendError(f"{url}: HTTP {exc.code}: {body}",
                           permanent=400 <= exc.code < 500 and exc.code != 429) from exc
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        raise BackendError(f"{url}: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise BackendError(f"{url}: response is not JSON: {exc}") from exc


class OpenAIBackend:
    def __init__(self, base_url: str, model: str, api_key: str = "", timeout: float = 300.0,
                 concurrency: int = 8) -> None:
        if not base_url:
            raise BackendError("the openai backend needs a server URL (CXR_OPENAI_URL)",
                               permanent=True)
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.timeout = timeout
        self.concurrency = max(1, concurrency)
        self.info = BackendInfo(name="openai", model_id=model,
                                model_revision=f"served by {self.base_url}", is_mock=False,
                                settings={"temperature": "0", "url": self.base_url})

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
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(requests) or 1)) as pool:
            return list(pool.map(self._one, requests))
