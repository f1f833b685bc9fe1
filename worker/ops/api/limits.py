"""What a stranger can cost the HTTP service before anyone knows who they are.

The API is reached over a hospital network (the image binds it to 0.0.0.0), and FastAPI
reads and parses a request's body before any dependency, ``require_token`` included, has
run.  So the bounds sit under the application, on the way in:

* **Body size**, enforced while the body arrives: a declared ``Content-Length`` over
  ``max_body_bytes`` is answered 413 before a byte of it is read; a body that streams past
  the limit (chunked, or lying about its length) is cut off at the limit with the same 413.
* **Arrival time**: a request's head must be complete within ``header_seconds`` of the
  connection opening (or of the previous response on a kept-alive connection), and its
  body within ``body_seconds`` of the head; a client that drips is disconnected (head) or
  answered 408 (body), so a slow client holds nothing for long.
* **Header size**: h11's incomplete-event limit (``max_header_bytes``): a head larger than
  that is refused with 431-style closure by h11 before it is buffered further.
* **Connections per client address**: at most ``max_connections_per_client`` open at once;
  one more is answered 429 and closed before it is read.

The last three live in the HTTP protocol (uvicorn's ``H11Protocol``, subclassed), the first
two in an ASGI middleware.  The subclass relies on uvicorn internals, named in
``RELIES_ON`` and checked when the server is built: a uvicorn whose protocol no longer has
them fails at start with one line saying so, rather than serving unbounded.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from worker.settings import Settings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# uvicorn.protocols.http.h11_impl.H11Protocol (uvicorn 0.54): the methods the subclass
# below overrides; it also reads the instance attributes ``cycle`` (the request in
# progress, replaced by each new request), ``transport``, ``client`` and ``loop``
RELIES_ON = ("connection_made", "connection_lost", "on_response_complete")


@dataclass(frozen=True)
class HttpLimits:
    """The bounds above, from settings (``CXR_API_*``)."""

    max_body_bytes: int = 64 * 1024
    header_seconds: float = 10.0
    body_seconds: float = 30.0
    max_header_bytes: int = 16 * 1024
    max_connections_per_client: int = 32

    @classmethod
    def of(cls, settings: Settings) -> HttpLimits:
        return cls(max_body_bytes=settings.api_max_body_kb * 1024,
                   header_seconds=settings.api_header_seconds,
                   body_seconds=settings.api_body_seconds,
                   max_header_bytes=settings.api_max_header_kb * 1024,
                   max_connections_per_client=settings.api_connections_per_client)

    def uvicorn_options(self) -> dict[str, Any]:
        """What uvicorn itself enforces: the head's size; our protocol for the rest."""
        return {"http": limited_protocol(self),
                "h11_max_incomplete_event_size": self.max_header_bytes}


class _Answered(Exception):
    """The middleware has answered the request itself; what the app does next is moot."""


def _reason(status: int, detail: str) -> list[Message]:
    body = json.dumps({"detail": detail}).encode()
    return [{"type": "http.response.start", "status": status,
             "headers": [(b"content-type", b"application/json"),
                         (b"content-length", str(len(body)).encode()),
                         (b"connection", b"close")]},
            {"type": "http.response.body", "body": body}]


class BodyLimit:
    """ASGI middleware: the body's size and arrival time, before the app reads any of it."""

    def __init__(self, app: ASGIApp, limits: HttpLimits) -> None:
        self.app, self.limits = app, limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limits.max_body_bytes
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            for message in _reason(413, f"request body over the limit of {limit} bytes "
                                        "(CXR_API_MAX_BODY_KB)"):
                await send(message)
            return
        state = {"read": 0, "answered": False, "started": False}
        deadline = time.monotonic() + self.limits.body_seconds

        async def answer(status: int, detail: str) -> Message:
            if not state["started"]:
                state["answered"] = True
                for message in _reason(status, detail):
                    await send(message)
            return {"type": "http.disconnect"}

        async def bounded_receive() -> Message:
            if state["answered"]:
                return {"type": "http.disconnect"}
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                return await answer(408, f"request body not received within "
                                         f"{self.limits.body_seconds:g} s")
            if message["type"] == "http.request":
                state["read"] += len(message.get("body", b""))
                if state["read"] > limit:
                    return await answer(413, f"request body over the limit of {limit} "
                                             "bytes (CXR_API_MAX_BODY_KB)")
            return message

        async def guarded_send(message: Message) -> None:
            if state["answered"]:
                return  # our answer went out; the app's (an error about the cut) does not
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        try:
            await self.app(scope, bounded_receive, guarded_send)
        except Exception:
            if not state["answered"]:
                raise  # a real error of the app's: Starlette's own handling stands


def _refuse(transport: asyncio.Transport) -> None:
    """429 and close, before a byte of the request is read."""
    start, body = _reason(429, "too many open connections from this address")
    transport.write(b"HTTP/1.1 429 Too Many Requests\r\n" + b"".join(
        k + b": " + v + b"\r\n" for k, v in start["headers"]) + b"\r\n" + body["body"])
    transport.close()


def limited_protocol(limits: HttpLimits) -> type[asyncio.Protocol]:
    """uvicorn's h11 protocol with the head deadline and the per-client connection cap.

    Raises RuntimeError (one line) when this uvicorn's protocol lacks what it relies on."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    missing = [name for name in RELIES_ON if not callable(getattr(H11Protocol, name, None))]
    if missing:
        raise RuntimeError(f"uvicorn's H11Protocol has no {', '.join(missing)}: the HTTP "
                           "limits (worker/ops/api/limits.py) need reviewing for this uvicorn")
    open_per_client: Counter[str] = Counter()

    class LimitedH11Protocol(H11Protocol):
        """One connection: counted against its client address, and closed when its
        request head has not arrived in time."""

        _armed_for: object = None
        _deadline: asyncio.TimerHandle | None = None
        _counted: str = ""

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            host = self.client[0] if self.client else ""
            if open_per_client[host] >= limits.max_connections_per_client:
                _refuse(transport)
                return
            open_per_client[host] += 1
            self._counted = host
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._counted:
                open_per_client[self._counted] -= 1
                if open_per_client[self._counted] <= 0:
                    del open_per_client[self._counted]
                self._counted = ""
            if self._deadline is not None:
                self._deadline.cancel()
            super().connection_lost(exc)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm()  # the next request's head gets the same time

        def _arm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
            self._armed_for = self.cycle
            self._deadline = self.loop.call_later(limits.header_seconds, self._head_overdue)

        def _head_overdue(self) -> None:
            if self.cycle is self._armed_for and not self.transport.is_closing():
                self.transport.close()  # no new request head since: a client that drips

    return LimitedH11Protocol
