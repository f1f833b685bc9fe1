"""The ``hf-space`` backend: the public NV-Reason-CXR demo's Gradio queue protocol.

Opt-in only: the image leaves the site and goes to a public service.  Protocol (as the
NVIDIA wrapper speaks it): read ``/config`` (the protocol it offers, its API prefix, the
``chat`` endpoint), upload the file, join the queue, then read server-sent events,
applying ``append``/``replace`` patches until ``process_completed``.

This is Gradio's ``sse_v3`` protocol, hand-written rather than through ``gradio_client``
(docs/http-clients.md says why); a Space that no longer offers ``sse_v3`` is refused with
a permanent error that names what it offers, rather than misread.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Sequence
from typing import Any

from models.backend import DEFAULT_MODEL_ID, BackendError, BackendInfo, Generation, ModelRequest
from models.http_status import describe_http_status, is_permanent_http_status
from models.openai_compat import http_json

log = logging.getLogger(__name__)

DEFAULT_SPACE_URL = "https://nvidia-nv-reason-cxr.hf.space"
PRIVACY_WARNING = (
    "hf-space backend: images are sent to a public Hugging Face Space outside this site; "
    "use only de-identified research images"
)
GRADIO_PROTOCOL = "sse_v3"  # the one queue protocol this client speaks


def offered_protocols(config: dict[str, Any]) -> set[str]:
    """The queue protocols a Gradio ``/config`` offers: ``protocol`` (the one its own
    front end uses) and ``supported_protocols`` (newer releases keep older ones there)."""
    offered = {str(config.get("protocol") or "")} | {
        str(p) for p in config.get("supported_protocols") or []}
    return offered - {""}


def _http_failure(what: str, exc: Exception) -> BackendError:
    """A BackendError for a failed request; an HTTP status decides by the one rule."""
    if isinstance(exc, urllib.error.HTTPError):
        return BackendError(f"{what}: {describe_http_status(exc.code)}",
                            permanent=is_permanent_http_status(exc.code))
    return BackendError(f"{what}: {exc}")


def apply_patch(value: Any, ops: Any) -> Any:
    """Apply Gradio's streaming diff ops ([op, path, chunk]) to a string output."""
    if not isinstance(ops, list) or not all(isinstance(op, list) for op in ops):
        return ops  # a whole value, not a diff (an empty diff changes nothing)
    for op in ops:
        kind, _path, chunk = op[0], op[1], op[2] if len(op) > 2 else None
        if kind == "replace":
            value = chunk
        elif kind == "append":
            value = (value or "") + str(chunk)
        elif kind == "add" and _path == []:
            value = chunk
    return value


def describe_space(base_url: str) -> BackendInfo:
    """The Space's identity: it names no revision, so the Space (a public address) stands
    for one; the same for a batch and for the backend."""
    base = base_url.rstrip("/")
    return BackendInfo(name="hf-space", model_id=DEFAULT_MODEL_ID,
                       model_revision=f"space {base}", is_mock=False,
                       settings={"url": base, "privacy": PRIVACY_WARNING})


class HFSpaceBackend:
    def __init__(self, base_url: str = DEFAULT_SPACE_URL, timeout: float = 300.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        log.warning(PRIVACY_WARNING)
        self.info = describe_space(self.base_url)

    def _upload(self, png: bytes, prefix: str) -> dict[str, Any]:
        boundary = uuid.uuid4().hex
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; "
                f"filename=\"cxr.png\"\r\nContent-Type: image/png\r\n\r\n").encode() + png + \
            f"\r\n--{boundary}--\r\n".encode()
        req = urllib.request.Request(f"{self.base_url}{prefix}/upload", data=body,
                                     headers={"Content-Type":
                                              f"multipart/form-data; boundary={boundary}"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                paths = json.loads(resp.read().decode())
        except (urllib.error.URLError, TimeoutError, ConnectionError,
                json.JSONDecodeError) as exc:
            raise _http_failure("upload to the Space failed", exc) from exc
        return {"path": paths[0], "orig_name": "cxr.png", "size": len(png),
                "mime_type": "image/png", "is_stream": False,
                "meta": {"_type": "gradio.FileData"}}

    def _endpoint(self) -> tuple[int, str]:
        """The ``chat`` endpoint's fn_index and the API prefix, from ``/config``, once the
        Space is known to offer the protocol spoken here."""
        config = http_json(f"{self.base_url}/config", None, self.timeout)
        offered = offered_protocols(config)
        if GRADIO_PROTOCOL not in offered:
            raise BackendError(
                f"the Space offers Gradio protocol {', '.join(sorted(offered)) or 'none named'}"
                f" (Gradio {config.get('version', '?')}); this client speaks "
                f"{GRADIO_PROTOCOL} only", permanent=True)
        # Gradio 5 serves its API under api_prefix ("/gradio_api"); Gradio 4 at the root
        prefix = ("/" + str(config.get("api_prefix") or "").strip("/")).rstrip("/")
        for i, dep in enumerate(config.get("dependencies", [])):
            if str(dep.get("api_name") or "").lstrip("/") == "chat":
                return int(dep.get("id", i)), prefix
        raise BackendError("the Space has no 'chat' endpoint", permanent=True)

    def _one(self, req: ModelRequest, fn_index: int, prefix: str) -> Generation:
        start = time.perf_counter()
        image = self._upload(req.image_png, prefix)
        history = [{"role": t.role, "content": t.text} for t in req.turns[:-1]]
        session = uuid.uuid4().hex
        http_json(f"{self.base_url}{prefix}/queue/join",
                  {"data": [req.turns[-1].text, history, image], "fn_index": fn_index,
                   "session_hash": session}, self.timeout)
        text: Any = ""
        url = f"{self.base_url}{prefix}/queue/data?session_hash={session}"
        try:
            with urllib.request.urlopen(url, timeout=self.timeout) as resp:
                for raw in resp:
                    line = raw.decode().strip()
                    if not line.startswith("data:"):
                        continue
                    event = json.loads(line[5:])
                    msg = event.get("msg")
                    data = (event.get("output") or {}).get("data") or []
                    if msg == "process_generating" and data:
                        text = apply_patch(text, data[0])
                    elif msg == "process_completed":
                        if not event.get("success", False):
                            raise BackendError(f"Space reported failure: {event.get('output')}")
                        if data:
                            text = apply_patch(text, data[0])
                        break
                    elif msg == "close_stream":
                        break
        except (urllib.error.URLError, TimeoutError, ConnectionError,
                json.JSONDecodeError) as exc:
            raise _http_failure("Space event stream failed", exc) from exc
        return Generation(text=str(text), generated_tokens=None,
                          seconds=time.perf_counter() - start)

    def generate(self, requests: Sequence[ModelRequest]) -> list[Generation]:
        fn_index, prefix = self._endpoint()
        return [self._one(r, fn_index, prefix) for r in requests]
