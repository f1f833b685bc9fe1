"""The few places where the listener relies on pynetdicom internals, kept in one file.

pynetdicom gives no public hook for them; each is small, and declares in ``RELIES_ON``
the pynetdicom code it assumes.  ``dicom_gateway/listen/pynetdicom/canary.py`` hashes that code:
when an upgrade changes any of it, the listener leaves that adaptation out (pynetdicom's
own behaviour) and says so once, so a silent change cannot slip in.

* Both reactors of an association poll with fixed sleeps: the association thread sleeps
  1 ms before each look at its DIMSE message queue, and the DUL thread sleeps
  ``_run_loop_delay`` (1 ms) whenever it found nothing to do.  A C-STORE exchange crosses
  both several times, so each instance pays milliseconds of sleeping (pynetdicom issues
  120, 139, 650).  ``install_wakeups`` keeps the same loops and the same upper bounds, but
  lets each sleep end the moment there is work: a DIMSE message queued for the
  association, data on the socket or a PDU queued to send for the DUL.  It works through
  the ``time`` module those two pynetdicom modules call: inside a reactor thread of an
  association it was installed on, ``time.sleep(d)`` becomes such a wait of at most ``d``;
  everywhere else it is ``time.sleep``.
* A C-STORE received in chunked mode (``STORE_RECV_CHUNKED_DATASET``) is written to a
  ``NamedTemporaryFile(delete=False)`` held by the association's partial DIMSE message
  (``assoc.dimse.message._data_set_file`` / ``_data_set_path``).  If the peer drops the
  association mid-transfer, pynetdicom leaves that file behind; a misbehaving peer could
  fill the disk with them.  ``discard_partial_dataset`` removes it when the association
  ends.
* pynetdicom enforces ``maximum_associations`` per process: during negotiation, in the
  association's own thread, ``ACSE._negotiate_as_acceptor`` rejects (transient, local
  limit exceeded) when its acceptors outnumber ``ae.maximum_associations``.  Several
  listener processes on one port need one limit for all of them
  (``dicom_gateway/listen/slots.py``).  ``SlotLimitedAE`` reports a limit of 0 to
  an association whose connection found no free slot, so that same check, with its
  standard A-ASSOCIATE-RJ, turns it away.  That check also counts connections that have
  sent no A-ASSOCIATE-RQ yet (every acceptor thread alive); ``SlotLimitedAE`` raises the
  limit it reports by their number, so that only requested associations count.
* pynetdicom's settings are process-wide (``pynetdicom._config``), but the listener's
  two are for its own associations only: every other pynetdicom user in the process (the
  SR sender, batch's C-GET, a test's SCU) keeps pynetdicom's defaults.
  ``receive_chunked`` has one association write each C-STORE dataset to a file as it
  arrives (``STORE_RECV_CHUNKED_DATASET``): ``dimse_messages`` reads that flag from its
  module global ``_config``, in the association's DUL thread, when the command set of a
  C-STORE-RQ is decoded; ``_ListenerConfig`` stands in for that global and answers True
  in a DUL thread so marked, pynetdicom's own value everywhere else.
  ``unbind_standard_log_handlers`` removes pynetdicom's standard log handlers from one
  association (what ``LOG_HANDLER_LEVEL = "none"`` does for all): they format every PDU
  and DIMSE message even when nothing below WARNING is shown (about 0.2 ms per C-STORE).
  Both are done at EVT_CONN_OPEN, before the association's reactors start.

The two encoders that replace pydicom on the hot path (C-STORE-RSP, file meta) are in
``dicom_gateway/listen/pynetdicom/encoding.py``.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import select
import socket
import threading
import time as _time
from pathlib import Path
from typing import Any

from pynetdicom import AE, evt
from pynetdicom import _config as _pynetdicom_config
from pynetdicom import association as _association
from pynetdicom import dimse_messages as _dimse_messages
from pynetdicom import dul as _dul
from pynetdicom._handlers import (
    standard_dimse_recv_handler,
    standard_dimse_sent_handler,
    standard_pdu_recv_handler,
    standard_pdu_sent_handler,
)

log = logging.getLogger(__name__)

# Each adaptation, and the pynetdicom (or pydicom) code whose behaviour it assumes:
# dicom_gateway/listen/pynetdicom/canary.py keeps a hash of each, and the listener leaves an
# adaptation out (pynetdicom's own behaviour) when any of its entries changed.
_PN = "pynetdicom."
RELIES_ON: dict[str, tuple[str, ...]] = {
    # install_wakeups, _ReactorClock: the two reactors' sleeps and what wakes them
    "wakeups": (
        _PN + "association:time", _PN + "dul:time",  # every sleep under our clock
        _PN + "association.Association._run_reactor",  # sleeps in the reactor threads
        _PN + "association.Association.kill",
        _PN + "association.Association._abort_blocking",
        _PN + "dul.DULServiceProvider.run_reactor",
        _PN + "dul.DULServiceProvider.stop_dul",
        _PN + "association.Association.__init__",  # its thread runs run_reactor
        _PN + "association.Association.run_reactor",  # negotiation, then _run_reactor
        _PN + "transport.RequestHandler.handle",  # EVT_CONN_OPEN before the thread starts
        _PN + "transport.RequestHandler._create_association",
        _PN + "transport.AssociationSocket.__init__",  # dul.socket.socket: the connection
        _PN + "transport.AssociationSocket.ready.fget",  # what the DUL polls
        _PN + "transport.AssociationSocket.close",
        _PN + "dul.DULServiceProvider.__init__",  # to_provider_queue, _run_loop_delay
        _PN + "dul.DULServiceProvider._is_transport_event",
        _PN + "dul.DULServiceProvider._process_recv_primitive",
        _PN + "dul.DULServiceProvider.send_pdu",  # the put that wakes the DUL
        _PN + "dimse.DIMSEServiceProvider.__init__",  # msg_queue
        _PN + "dimse.DIMSEServiceProvider.receive_primitive",  # the put that wakes assoc
        _PN + "dimse.DIMSEServiceProvider.get_msg",
        _PN + "dimse.DIMSEServiceProvider.peek_msg",
    ),
    # discard_partial_dataset: the chunked dataset's temporary file
    "partial_cleanup": (
        _PN + "dimse_messages.DIMSEMessage.__init__",
        _PN + "dimse_messages.DIMSEMessage.decode_msg",
        _PN + "dimse_messages.DIMSEMessage.message_to_primitive",
        _PN + "dimse.DIMSEServiceProvider.__init__",  # dimse.message
        _PN + "dimse.DIMSEServiceProvider.receive_primitive",  # resets it when complete
    ),
    # SlotLimitedAE: the limit read during negotiation, in the association's thread
    "slot_limit": (
        _PN + "ae.ApplicationEntity.__init__",  # _maximum_associations
        _PN + "ae.ApplicationEntity.maximum_associations.fget",
        _PN + "ae.ApplicationEntity.maximum_associations.fset",
        _PN + "ae.ApplicationEntity.active_associations.fget",
        _PN + "acse.ACSE.negotiate_association",
        _PN + "acse.ACSE._negotiate_as_acceptor",
        _PN + "transport.RequestHandler.handle",  # EVT_CONN_OPEN, then negotiation
        # EVT_REQUESTED (we mark the association, then take a slot) before negotiation;
        # and the listener's idle-connection rule: acse_timeout, set per association at
        # EVT_CONN_OPEN, is how long the acceptor waits for the A-ASSOCIATE-RQ
        _PN + "association.Association.run_reactor",
        _PN + "association.Association.acse_timeout.fset",  # the DUL's ARTIM timer too
    ),
    # install_pdu_limit: the DUL reads a PDU's body with one recv(length) of its socket,
    # whatever length the peer announced, into memory
    "pdu_limit": (
        _PN + "dul.DULServiceProvider._read_pdu_data",
        _PN + "transport.AssociationSocket.recv",
        _PN + "transport.AssociationSocket.__init__",  # dul.socket: the AssociationSocket
    ),
    # receive_chunked, unbind_standard_log_handlers: pynetdicom's settings, per association
    "association_config": (
        # the one reader of STORE_RECV_CHUNKED_DATASET under our stand-in for _config
        # (which passes every other read and write to pynetdicom's)
        _PN + "dimse_messages.DIMSEMessage.decode_msg",
        _PN + "dimse.DIMSEServiceProvider.receive_primitive",  # decode_msg ...
        _PN + "fsm.DT_2", _PN + "fsm.AR_6",  # ... called by the DUL's state machine
        _PN + "dul.DULServiceProvider.run_reactor",  # in the DUL's own thread
        _PN + "association.Association.__init__",  # the DUL made, defaults bound
        _PN + "association.Association._bind_defaults",  # the standard log handlers
        _PN + "transport.AssociationServer._bind_defaults",  # and the server's, copied
        _PN + "transport.RequestHandler._create_association",  # into each association
        _PN + "transport.RequestHandler.handle",  # EVT_CONN_OPEN before the threads start
    ),
}

OVER_LIMIT = "_cxr_over_limit"  # set on an Association whose connection got no slot
REQUESTED = "_cxr_requested"  # set on an Association once its A-ASSOCIATE-RQ arrived


class SlotLimitedAE(AE):
    """An AE whose association limit is 0 for an association marked over the limit, and
    counts only associations that were requested.

    pynetdicom reads ``maximum_associations`` in the association's thread while it
    negotiates, comparing it with every acceptor thread alive; there the limit reported
    is the one configured plus the acceptors still waiting for their A-ASSOCIATE-RQ.
    Everywhere else the limit is the one configured.
    """

    @property
    def maximum_associations(self) -> int:
        current = threading.current_thread()
        if getattr(current, OVER_LIMIT, False):
            return 0
        if not getattr(current, REQUESTED, False):
            return int(self._maximum_associations)
        waiting = sum(1 for a in self.active_associations
                      if a.is_acceptor and not getattr(a, REQUESTED, False))
        return int(self._maximum_associations) + waiting

    @maximum_associations.setter
    def maximum_associations(self, value: int) -> None:
        AE.maximum_associations.fset(self, value)  # type: ignore[attr-defined]


def discard_partial_dataset(assoc: Any) -> Path | None:
    """Close and delete the temporary file of a dataset that never finished arriving.

    Only a message still being received holds one: a complete message is handed on and
    ``dimse.message`` reset to None before the C-STORE handler runs.
    """
    message = getattr(getattr(assoc, "dimse", None), "message", None)
    if message is None:
        return None
    handle = getattr(message, "_data_set_file", None)
    path = getattr(message, "_data_set_path", None)
    if isinstance(path, tuple):
        path = path[0]
    if handle is not None:
        with contextlib.suppress(OSError):
            handle.close()
    if not path:
        return None
    path = Path(path)
    with contextlib.suppress(OSError):
        path.unlink()
        message._data_set_file = None
        message._data_set_path = None
        return path
    return None


class _WakingQueue(queue.Queue):
    """A queue that calls ``wake`` after each put."""

    def __init__(self, wake: Any) -> None:
        super().__init__()
        self._wake = wake

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        super().put(item, block, timeout)
        self._wake()


class _ReactorClock:
    """Stands in for ``time`` in pynetdicom's association and DUL modules."""

    def __getattr__(self, name: str) -> Any:
        return getattr(_time, name)

    @staticmethod
    def sleep(seconds: float) -> None:
        wait = getattr(threading.current_thread(), "_cxr_wait", None)
        if wait is None:
            _time.sleep(seconds)
        else:
            wait(seconds)


_CLOCK = _ReactorClock()


def install_wakeups(assoc: Any) -> bool:
    """Let this association's two reactors wake on work instead of sleeping it out.

    Called as the association opens (before any DIMSE message); False when the objects
    are not what this adaptation expects (then pynetdicom's own sleeps stay).
    """
    dul = getattr(assoc, "dul", None)
    dimse = getattr(assoc, "dimse", None)
    raw = getattr(getattr(dul, "socket", None), "socket", None)
    if dul is None or dimse is None or raw is None or not dimse.msg_queue.empty() \
            or not dul.to_provider_queue.empty():
        return False
    _association.time = _CLOCK  # type: ignore[assignment]
    _dul.time = _CLOCK  # type: ignore[assignment]

    message = threading.Event()

    def assoc_wait(seconds: float) -> bool:
        """At most ``seconds``; True when a DIMSE message ended it."""
        woken = message.wait(seconds)
        message.clear()
        return woken

    dimse.msg_queue = _WakingQueue(message.set)
    assoc._cxr_wait = assoc_wait

    reader, writer = socket.socketpair()
    reader.setblocking(False)
    writer.setblocking(False)

    def poke() -> None:
        with contextlib.suppress(OSError):  # full (already poked) or closed: fine
            writer.send(b"\0")

    def dul_wait(seconds: float) -> bool:
        """At most ``seconds``; True when data on the socket or a PDU to send ended it."""
        try:
            ready, _, _ = select.select([raw, reader], [], [], seconds)
        except (OSError, ValueError):  # the socket closed under us: as before
            _time.sleep(seconds)
            return False
        if reader in ready:
            with contextlib.suppress(OSError):
                reader.recv(4096)
        return bool(ready)

    dul.to_provider_queue = _WakingQueue(poke)
    dul._cxr_wait = dul_wait
    assoc._cxr_wake_sockets = (reader, writer)
    return True


class PDUTooLong(OSError):
    """A peer announced a PDU longer than the listener receives."""


def install_pdu_limit(assoc: Any, limit: int) -> bool:
    """Refuse a PDU announced longer than ``limit`` bytes before reading any of its body.

    pynetdicom reads a PDU whole into memory, as long as its header says and whatever
    maximum we advertised, so one peer could hold gigabytes of it.  The error raised here
    is the one pynetdicom already takes for a broken connection (the transport closes,
    Evt17); nothing of the PDU is kept.  False when the socket is not what is expected.
    """
    sock = getattr(getattr(assoc, "dul", None), "socket", None)
    recv = getattr(sock, "recv", None)
    if sock is None or recv is None:
        return False

    def bounded_recv(nr_bytes: int) -> bytearray:
        if nr_bytes > limit:
            log.warning("a peer announced a PDU of %d bytes, over the %d this listener "
                        "receives: connection closed", nr_bytes, limit)
            raise PDUTooLong(f"PDU of {nr_bytes} bytes announced; the limit is {limit}")
        return recv(nr_bytes)

    sock.recv = bounded_recv
    return True


def remove_wakeups(assoc: Any) -> None:
    """Close the wake-up socket pair of an association that ended."""
    for sock in getattr(assoc, "_cxr_wake_sockets", ()):
        with contextlib.suppress(OSError):
            sock.close()


# -- pynetdicom's settings for the listener's associations only --------------------------

CHUNKED = "_cxr_chunked"  # set on the DUL thread of an association received in chunked mode


class _ListenerConfig:
    """Stands in for ``pynetdicom._config`` in ``dimse_messages``: chunked mode in the DUL
    threads marked by ``receive_chunked``, pynetdicom's own value everywhere else; every
    other setting, read or written, is pynetdicom's."""

    @property
    def STORE_RECV_CHUNKED_DATASET(self) -> bool:  # noqa: N802 - pynetdicom's name
        if getattr(threading.current_thread(), CHUNKED, False):
            return True
        return bool(_pynetdicom_config.STORE_RECV_CHUNKED_DATASET)

    def __getattr__(self, name: str) -> Any:
        return getattr(_pynetdicom_config, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(_pynetdicom_config, name, value)


_LISTENER_CONFIG = _ListenerConfig()


def receive_chunked(assoc: Any) -> bool:
    """Have this association write each C-STORE dataset to a temporary file as it arrives
    (``event.dataset_path``), without changing pynetdicom's setting for anyone else.

    Called at EVT_CONN_OPEN; False when the association has no DUL thread to mark.
    """
    dul = getattr(assoc, "dul", None)
    if not isinstance(dul, threading.Thread):
        return False
    _dimse_messages._config = _LISTENER_CONFIG  # type: ignore[assignment]
    setattr(dul, CHUNKED, True)
    return True


_STANDARD_LOG_HANDLERS = (
    (evt.EVT_DIMSE_RECV, standard_dimse_recv_handler),
    (evt.EVT_DIMSE_SENT, standard_dimse_sent_handler),
    (evt.EVT_PDU_RECV, standard_pdu_recv_handler),
    (evt.EVT_PDU_SENT, standard_pdu_sent_handler),
)


def unbind_standard_log_handlers(assoc: Any) -> bool:
    """Remove pynetdicom's standard log handlers from this association only (called at
    EVT_CONN_OPEN, before any PDU; other associations in the process keep theirs)."""
    unbind = getattr(assoc, "unbind", None)
    if unbind is None:
        return False
    for event, handler in _STANDARD_LOG_HANDLERS:
        unbind(event, handler)
    return True

