"""The ``hf-space`` backend: the public NV-Reason-CXR demo's Gradio queue protocol.

Opt-in only: the image leaves the site and goes to a public service.  Protocol (as the
NVIDIA wrapper speaks it): upload the file, find the ``chat`` endpoint in ``/config``,
join the queue, then read server-sent events, applying ``append``/``replace`` patches
until ``process_completed``.
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

from models.backend import BackendError, BackendInfo, Generation, ModelRequest
from models.openai_compat import http_json

log = logging.getLogger(__name__)

DEFAULT_SPACE_URL = "https://nvidia-nv-reason-cxr.hf.space"
PRIVACY_WARNING = (
    "hf-space backend: images are sent to a public Hugging Face Space outside this site; "
    "use only de-identified research images"
)


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


class HFSpaceBackend:
    def __init__(self, base_url: str = DEFAULT_SPACE_URL, timeout: float = 300.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        log.warning(PRIVACY_WARNING)
        self.info = BackendInfo(name="hf-space", model_id="nvidia/NV-Reason-CXR-3B",
                                model_revision=f"space {self.base_url}", is_mock=False,
                                settings={"url": self.base_url, "privacy": PRIVACY_WARNING})

    def _upload(self, png: bytes) -> dict[str, Any]:
        boundary = uuid.uuid4().hex
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; "
                f"filename=\"cxr.png\"\r\nContent-Type: image/png\r\n\r\n").encode() + png + \
            f"\r\n--{boundary}--\r\n".encode()
        req = urllib.request.Request(f"{self.base_url}/gradio_api/upload", data=body,
                                     headers={"Content-Type":
                                              f"multipart/form-data; boundary={boundary}"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                paths = json.loads(resp.read().decode())
        except (urllib.error.URLError, TimeoutError, json.JSONDecodeError) as exc:
            raise BackendError(f"upload to the Space failed: {exc}") from exc
        return {"path": paths[0], "orig_name": "cxr.png", "size": len(png),
                "mime_type": "image/png", "is_stream": False,
                "meta": {"_type": "gradio.FileData"}}

    def _fn_index(self) -> int:
        config = http_json(f"{self.base_url}/config", None, self.timeout)
        for i, dep in enumerate(config.get("dependencies", [])):
            if str(dep.get("api_name") or "").lstrip("/") == "chat":
                return int(dep.get("id", i))
        raise BackendError("the Space has no 'chat' endpoint", permanent=True)

    def _one(self, req: ModelRequest, fn_index: int) -> Generation:
        start = time.perf_counter()
        image = self._upload(req.image_png)
        history = [{"role": t.role, "content": t.text} for t in req.turns[:-1]]
        session = uuid.uuid4().hex
        http_json(f"{self.base_url}/gradio_api/queue/join",
                  {"data": [req.turns[-1].text, history, image], "fn_index": fn_index,
                   "session_hash": session}, self.timeout)
        text: Any = ""
        url = f"{self.base_url}/gradio_api/queue/data?session_hash={session}"
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
        except (urllib.error.URLError, TimeoutError, json.JSONDecodeError) as exc:
            raise BackendError(f"Space event stream failed: {exc}") from exc
        return Generation(text=str(text), generated_tokens=None,
                          seconds=time.perf_counter() - start)

    def generate(self, requests: Sequence[ModelRequest]) -> list[Generation]:
        fn_index = self._fn_index()
        return [self._one(r, fn_index) for r in requests]
