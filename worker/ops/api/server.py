"""uvicorn in a thread, for ``serve``: the HTTP service starts and stops with the
gateway process rather than as a process of its own (``cxr-gateway api`` runs it alone).
"""

from __future__ import annotations

import socket
import threading
import time

from fastapi import FastAPI

from worker.ops.api.limits import HttpLimits


class APIServer:
    """uvicorn in a thread, for ``serve``; stops with it."""

    def __init__(self, app: FastAPI, host: str, port: int,
                 limits: HttpLimits | None = None) -> None:
        import uvicorn

        self.config = uvicorn.Config(app, host=host, port=port, log_level="warning",
                                     access_log=False, lifespan="off",
                                     **(limits or HttpLimits()).uvicorn_options())
        self.server = uvicorn.Server(self.config)  # in a thread it leaves signals alone
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 10.0) -> None:
        """Listening when it returns; a taken port raises ``OSError`` naming host:port."""
        self._probe()
        self._thread = threading.Thread(target=self.server.run, name="api", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise OSError(f"the HTTP service could not listen on {self.config.host}:"
                              f"{self.config.port} (in use?)")
            time.sleep(0.05)

    def _probe(self) -> None:
        """A taken port: our one line, not uvicorn's log."""
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((self.config.host, self.config.port))
            except OSError as exc:
                raise OSError(exc.errno, f"the HTTP service cannot listen on "
                                         f"{self.config.host}:{self.config.port}: "
                                         f"{exc.strerror}") from exc

    def stop(self) -> None:
        self.server.should_exit = True
