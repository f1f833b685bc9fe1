"""Small loopback HTTP servers speaking the OpenAI chat-completions and Gradio queue protocols."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Server:
    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.requests = []  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    @property
    def requests(self) -> list[Any]:
        return self.httpd.requests  # type: ignore[attr-defined,no-any-return]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class JSONHandler(BaseHTTPRequestHandler):
    """Quiet, and answers JSON with its length (the stand-in servers share it)."""

    def log_message(self, *args: Any) -> None:
        pass

    def _json(self, code: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _text(self, code: int, text: str) -> None:
        data = text.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length", 0)))


def openai_server(reply: Callable[[dict[str, Any]], tuple[int, Any]]) -> Server:
    class Handler(JSONHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self._body())
            self.server.requests.append((self.path, body))  # type: ignore[attr-defined]
            code, payload = reply(body)
            self._json(code, payload)

    return Server(Handler)


def gradio_space_server(chunks: list[str], config: dict[str, Any] | None = None) -> Server:
    """Streams ``chunks``: the first as a replace of the '...' placeholder, the rest appended.
    ``/config`` is a Gradio 5 Space's (protocol sse_v3 under /gradio_api), plus ``config``."""

    class Handler(JSONHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.server.requests.append(("GET", self.path, None))  # type: ignore[attr-defined]
            if self.path == "/config":
                self._json(200, {"version": "5.9.1", "protocol": "sse_v3",
                                 "api_prefix": "/gradio_api",
                                 "dependencies": [{"id": 0, "api_name": "upload_x"},
                                                  {"id": 3, "api_name": "chat"}],
                                 **(config or {})})
                return
            if self.path.startswith("/gradio_api/queue/data"):
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                events: list[dict[str, Any]] = [
                    {"msg": "estimation", "rank": 0},
                    {"msg": "process_starts"},
                    {"msg": "process_generating", "output": {"data": [[["replace", [], "..."]]]}},
                    {"msg": "process_generating",
                     "output": {"data": [[["replace", [], chunks[0]]]]}},
                ]
                events += [{"msg": "process_generating",
                            "output": {"data": [[["append", [], c]]]}} for c in chunks[1:]]
                events += [{"msg": "process_completed", "success": True,
                            "output": {"data": [[]]}}, {"msg": "close_stream"}]
                for ev in events:
                    self.wfile.write(f"data: {json.dumps(ev)}\n\n".encode())
                return
            self._json(404, {"error": "not found"})

        def do_POST(self) -> None:  # noqa: N802
            body = self._body()
            self.server.requests.append(("POST", self.path, body))  # type: ignore[attr-defined]
            if self.path == "/gradio_api/upload":
                assert b'name="files"' in body and b"\x89PNG" in body
                self._json(200, ["/tmp/gradio/abc/cxr.png"])
            elif self.path == "/gradio_api/queue/join":
                self._json(200, {"event_id": "e1"})
            else:
                self._json(404, {"error": "not found"})

    return Server(Handler)
