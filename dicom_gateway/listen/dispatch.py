"""One process accepts on the DICOM port and hands each connection to the least busy
of several listener processes.

Why not let the kernel spread them (``SO_REUSEPORT``)?  It picks a socket by a hash of
the connection's addresses, blind to how busy each listener is: with 4 senders and 2
listener processes it gives one process 3 or 4 of them in 10 tries out of 16, and that
process's single interpreter then sets the pace of the whole burst (measured: 4-0 and
3-1 splits ran at 260-380 instances/s where 2-2 splits ran at 460-500/s).

The protocol, on one ``AF_UNIX``/``SOCK_SEQPACKET`` socket pair per listener process:

* dispatcher -> listener: a one-byte message ``C`` carrying the accepted connection's
  file descriptor (``SCM_RIGHTS``);
* listener -> dispatcher: a one-byte message ``D`` each time a handed connection is over.

The dispatcher counts, for every listener, the connections it handed and not yet heard
back about, and gives the next one to the listener with the fewest (the next in turn
among equals).  It knows nothing of DICOM: association negotiation, the association
limit and the allowlist stay with the listeners, which see an ordinary connection.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import threading
import time
from typing import Any

from pynetdicom import evt
from pynetdicom.transport import ThreadedAssociationServer

log = logging.getLogger(__name__)

# HandedConnectionServer stands in for pynetdicom's bound socket and accept() (then
# wraps TLS as get_request does), reports a failed request through handle_error, and
# StorageListener starts it the way start_server starts its own.  Hashed and checked by
# dicom_gateway/listen/pynetdicom/canary.py; with any of it changed, one listener process
# serves the port with pynetdicom's own server.
RELIES_ON: dict[str, tuple[str, ...]] = {
    "handed_connections": tuple("pynetdicom." + name for name in (
        "transport.AssociationServer.__init__",
        "transport.AssociationServer.server_bind",
        "transport.AssociationServer.get_request",
        "transport.AssociationServer.server_close",  # closes self.socket: our channel
        "transport.AssociationServer.shutdown",  # removes it from ae._servers
        "transport.ThreadedAssociationServer.process_request_thread",  # handle_error
        "ae.ApplicationEntity.make_server",  # **kwargs reach the server class
        "ae.ApplicationEntity.start_server",
    )),
    # wrap_server_side / DeferredHandshakeServer: get_request's TLS wrap without its
    # handshake, which then runs in the association's own thread on its first read
    "tls_handshake": tuple("pynetdicom." + name for name in (
        "transport.AssociationServer.get_request",
        "ae.ApplicationEntity.start_server",  # server_class
        "transport.AssociationSocket.ready.fget",  # an SSLSocket's pending bytes
        "transport.AssociationSocket.recv",  # the handshake's errors are OSErrors ...
        "dul.DULServiceProvider._read_pdu_data",  # ... which end the connection (Evt17)
    )),
}


def wrap_server_side(ssl_context: Any, conn: socket.socket) -> socket.socket:
    """TLS for an accepted connection, its handshake left to the association's thread.

    pynetdicom does the handshake in the accept loop, so a peer that connects and says
    nothing holds every other sender of the port out for as long as it likes; deferred,
    the first read in the association's own thread does it (OpenSSL's SSL_read
    negotiates when needed) and a silent peer is closed when its A-ASSOCIATE-RQ is late.
    """
    wrapped: socket.socket = ssl_context.wrap_socket(conn, server_side=True,
                                                     do_handshake_on_connect=False)
    return wrapped


class DeferredHandshakeServer(ThreadedAssociationServer):
    """pynetdicom's threaded server, with the TLS handshake out of its accept loop."""

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        assert self.socket is not None
        client, address = self.socket.accept()
        if self.ssl_context:
            client = wrap_server_side(self.ssl_context, client)
        return client, address

HAND_OVER = b"C"
DONE = b"D"
BACKLOG = 128  # connections the kernel queues while the dispatcher is between accepts


def channel_pair() -> tuple[socket.socket, socket.socket]:
    """A (dispatcher end, listener end) pair; message boundaries keep each fd with its byte."""
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)


class _Listener:
    """The dispatcher's view of one listener process."""

    def __init__(self, channel: socket.socket) -> None:
        self.channel = channel
        self.open = 0  # handed, and not yet reported over
        self.gone = False


class ConnectionDispatcher:
    """Owns the listening socket of the port; hands connections out, fewest open first.

    The constructor binds, so a port in use fails there with the ``OSError``
    (``EADDRINUSE``) a caller can report, and port 0 picks a free port (see :attr:`port`);
    :meth:`start` listens, so a sender is refused, not kept waiting, until the listeners
    are ready.
    """

    def __init__(self, host: str, port: int) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._socket = socket.socket(family, socket.SOCK_STREAM)
        try:
            self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._socket.bind((host, port))
        except BaseException:
            self._socket.close()
            raise
        self.port: int = self._socket.getsockname()[1]
        self._listeners: dict[int, _Listener] = {}
        self._turn = 0
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = socket.socketpair()
        self._stopping = False
        self._thread: threading.Thread | None = None

    def attach(self, index: int) -> socket.socket:
        """A fresh channel for listener ``index`` (replacing a dead one's); returns the
        listener's end, which the caller hands to that listener and then closes."""
        ours, theirs = channel_pair()
        ours.setblocking(False)
        with self._lock:
            old = self._listeners.get(index)
            self._listeners[index] = _Listener(ours)
        if old is not None:
            old.channel.close()
        self._wake()
        return theirs

    def open_counts(self) -> dict[int, int]:
        """Connections handed to each listener and not yet over (for diagnostics and tests)."""
        with self._lock:
            return {i: li.open for i, li in self._listeners.items() if not li.gone}

    def start(self) -> None:
        self._socket.listen(BACKLOG)
        self._socket.setblocking(False)  # a connection gone before accept() must not block it
        self._thread = threading.Thread(target=self._run, name="ConnectionDispatcher",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting; connections already handed out stay with their listeners."""
        self._stopping = True
        self._wake()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        self._socket.close()
        with self._lock:
            for li in self._listeners.values():
                li.channel.close()
            self._listeners.clear()
        self._wake_r.close()
        self._wake_w.close()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"w")

    def _run(self) -> None:
        while not self._stopping:
            with selectors.DefaultSelector() as sel:
                sel.register(self._socket, selectors.EVENT_READ)
                sel.register(self._wake_r, selectors.EVENT_READ)
                with self._lock:
                    for li in self._listeners.values():
                        if not li.gone:
                            sel.register(li.channel, selectors.EVENT_READ, li)
                self._serve(sel)

    def _serve(self, sel: selectors.BaseSelector) -> None:
        """Accept and hear back until the set of listeners changes (or we stop)."""
        while not self._stopping:
            for key, _ in sel.select():
                if key.fileobj is self._wake_r:
                    with contextlib.suppress(OSError):
                        self._wake_r.recv(4096)
                    return  # re-register: a listener was attached or is gone
                if key.fileobj is self._socket:
                    self._accept()
                elif self._heard(key.data):
                    return

    def _accept(self) -> None:
        try:
            conn, _ = self._socket.accept()
        except OSError:  # the peer gave up before we took it, or nothing is left to take
            return
        with conn:
            for li in self._by_load():
                try:
                    socket.send_fds(li.channel, [HAND_OVER], [conn.fileno()])
                except BlockingIOError:  # its queue is full (it has stalled): the next
                    continue
                except OSError:  # that listener is gone: the next in line takes it
                    li.gone = True
                    continue
                with self._lock:
                    li.open += 1
                return
            log.warning("no listener process can take a connection now; it is closed "
                        "(the sender may retry)")

    def _by_load(self) -> list[_Listener]:
        with self._lock:
            live = [li for li in self._listeners.values() if not li.gone]
            self._turn += 1
        if not live:
            return []
        start = self._turn % len(live)
        rotated = live[start:] + live[:start]  # the next in turn among equals
        return sorted(rotated, key=lambda li: li.open)

    def _heard(self, li: _Listener) -> bool:
        """Read the listener's reports; True when it is gone (its channel closed)."""
        while True:
            try:
                msg = li.channel.recv(16)
            except BlockingIOError:
                return False
            except OSError:
                msg = b""
            if not msg:
                with self._lock:
                    li.gone, li.open = True, 0
                return True
            if msg == DONE:
                with self._lock:
                    li.open = max(0, li.open - 1)


class HandedConnectionServer(ThreadedAssociationServer):
    """pynetdicom's threaded server, fed by a :class:`ConnectionDispatcher` instead of
    its own ``accept``.

    ``channel`` is this listener's end of the dispatcher's socket pair; ``address`` is the
    port the dispatcher listens on (what associations report as their acceptor's
    address).  Everything after the accept (TLS, negotiation, the handlers) is
    pynetdicom's own.  The dispatcher is told when each connection is over, so that it
    can count what this process holds.
    """

    def __init__(self, *args: Any, channel: socket.socket, **kwargs: Any) -> None:
        self._channel = channel
        super().__init__(*args, **kwargs)
        self.bind(evt.EVT_CONN_CLOSE, self._connection_over)

    def server_bind(self) -> None:
        """No socket of our own: the dispatcher's channel stands in for one."""
        assert self.socket is not None
        self.socket.close()
        self.socket = self._channel
        self._channel.setblocking(True)

    def server_activate(self) -> None:
        """Nothing to listen on: the dispatcher listens."""

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        assert self.socket is not None
        msg, fds, _, _ = socket.recv_fds(self.socket, 16, 1)
        if not fds:
            if not msg:  # the dispatcher is gone; its process ends this one soon
                time.sleep(0.5)
            raise OSError("no connection in the dispatcher's message")
        conn = socket.socket(fileno=fds[0])
        try:
            conn.setblocking(True)
            address = conn.getpeername()
            if self.ssl_context:
                conn = wrap_server_side(self.ssl_context, conn)
        except OSError:  # the peer left, or its TLS handshake failed
            conn.close()
            self._report()
            raise
        return conn, address

    def handle_error(self, request: Any, client_address: Any) -> None:
        super().handle_error(request, client_address)
        self._report()  # no association came of it (so no close event): it is over

    def _connection_over(self, event: evt.Event) -> None:
        self._report()

    def _report(self) -> None:
        with contextlib.suppress(OSError):  # the dispatcher is gone: nobody to tell
            self._channel.send(DONE)
