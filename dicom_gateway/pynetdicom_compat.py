"""The few places where the listener relies on pynetdicom internals, kept in one file.

pynetdicom gives no public hook for them; each is small, and declares in ``RELIES_ON``
the pynetdicom code it assumes.  ``dicom_gateway/pynetdicom_canary.py`` hashes that code:
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
  (``dicom_gateway/association_slots.py``).  ``SlotLimitedAE`` reports a limit of 0 to
  an association whose connection found no free slot, so that same check, with its
  standard A-ASSOCIATE-RJ, turns it away.  That check also counts connections that have
  sent no A-ASSOCIATE-RQ yet (every acceptor thread alive); ``SlotLimitedAE`` raises the
  limit it reports by their number, so that only requested associations count.
* pynetdicom encodes every response with pydicom, writing the command set twice (once
  to measure its group length): about 0.3 ms for a C-STORE-RSP, a tenth of our CPU per
  small instance.  ``install_fast_store_response`` sends a plain C-STORE-RSP (status
  only, no comment or offending element) from bytes built here instead, byte for byte
  what pynetdicom would send (``tests/test_pynetdicom_compat.py`` compares them), and
  leaves every other message, and every message when someone listens to
  ``EVT_DIMSE_SENT`` (pynetdicom's own debug log does), to pynetdicom.
* Likewise for the File Meta Information pynetdicom writes before each dataset it
  receives in chunked mode: ``install_fast_file_meta`` writes the same bytes without
  building a pydicom dataset (about 0.2 ms per instance).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import re
import select
import socket
import struct
import threading
import time as _time
from pathlib import Path
from typing import Any

from pynetdicom import AE, evt
from pynetdicom import association as _association
from pynetdicom import dimse_messages as _dimse_messages
from pynetdicom import dul as _dul
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.pdu_primitives import P_DATA

log = logging.getLogger(__name__)

# Each adaptation, and the pynetdicom (or pydicom) code whose behaviour it assumes:
# dicom_gateway/pynetdicom_canary.py keeps a hash of each, and the listener leaves an
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
    # install_fast_store_response: a C-STORE-RSP byte for byte pynetdicom's
    "fast_store_response": (
        _PN + "dimse.DIMSEServiceProvider.send_msg",
        _PN + "dimse.DIMSEServiceProvider.maximum_pdu_size.fget",
        _PN + "dimse_messages.DIMSEMessage.encode_msg",
        _PN + "dimse_messages.DIMSEMessage.primitive_to_message",
        _PN + "dimse_messages.C_STORE_RSP",
        _PN + "service_class.StorageServiceClass.SCP",  # self.dimse.send_msg(rsp, cx_id)
        _PN + "association.Association.get_handlers",
        _PN + "dul.DULServiceProvider.send_pdu",
        _PN + "pdu_primitives.P_DATA.presentation_data_value_list.fset",
    ),
    # install_fast_file_meta: the two names decode_msg calls, and the bytes they write
    "fast_file_meta": (
        _PN + "dimse_messages.DIMSEMessage.decode_msg",
        _PN + "dsutils.create_file_meta",
        "pydicom.filewriter.write_file_meta_info",
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


def remove_wakeups(assoc: Any) -> None:
    """Close the wake-up socket pair of an association that ended."""
    for sock in getattr(assoc, "_cxr_wake_sockets", ()):
        with contextlib.suppress(OSError):
            sock.close()


def _element(tag: int, value: bytes) -> bytes:
    """One implicit VR little endian element of a command set (group 0000)."""
    return struct.pack("<HHI", 0x0000, tag, len(value)) + value


def _ui(uid: str) -> bytes:
    raw = uid.encode("ascii")
    return raw + b"\0" if len(raw) % 2 else raw


def encode_c_store_rsp(message_id: int, sop_class_uid: str, sop_instance_uid: str,
                       status: int) -> bytes:
    """The command set of a C-STORE-RSP (PS3.7 9.3.1.2) with status only, as pynetdicom
    writes it: implicit VR little endian, elements in tag order, group length first."""
    body = b"".join((
        _element(0x0002, _ui(sop_class_uid)),  # Affected SOP Class UID
        _element(0x0100, struct.pack("<H", 0x8001)),  # Command Field: C-STORE-RSP
        _element(0x0120, struct.pack("<H", message_id)),  # Message ID Being Responded To
        _element(0x0800, struct.pack("<H", 0x0101)),  # Command Data Set Type: none
        _element(0x0900, struct.pack("<H", status)),  # Status
        _element(0x1000, _ui(sop_instance_uid)),  # Affected SOP Instance UID
    ))
    return _element(0x0000, struct.pack("<I", len(body))) + body


def install_fast_store_response(assoc: Any) -> bool:
    """Send this association's plain C-STORE responses from ``encode_c_store_rsp``."""
    dimse = getattr(assoc, "dimse", None)
    original = getattr(dimse, "send_msg", None)
    if dimse is None or original is None:
        return False

    def send_msg(primitive: Any, context_id: int) -> None:
        if type(primitive) is C_STORE and primitive.MessageIDBeingRespondedTo is not None \
                and primitive.ErrorComment is None and primitive.OffendingElement is None \
                and primitive.Status is not None \
                and not assoc.get_handlers(evt.EVT_DIMSE_SENT):
            command = encode_c_store_rsp(
                primitive.MessageIDBeingRespondedTo, primitive.AffectedSOPClassUID or "",
                primitive.AffectedSOPInstanceUID or "", primitive.Status)
            limit = dimse.maximum_pdu_size
            if primitive.AffectedSOPClassUID and primitive.AffectedSOPInstanceUID and \
                    (not limit or len(command) + 6 <= limit):
                pdata = P_DATA()
                # a list, not the tuple the type hint names: pynetdicom checks at run time
                pdata.presentation_data_value_list = [
                    [context_id, b"\x03" + command]]  # type: ignore[list-item]
                dimse.dul.send_pdu(pdata)
                return
        original(primitive, context_id)

    dimse.send_msg = send_msg
    return True


# -- File Meta Information of a dataset received in chunked mode --------------------------

_PLAIN_UID = re.compile(r"[0-9.]{1,64}")
_PLAIN_SH = re.compile(r"[ -\[\]-~]{1,16}")  # printable ASCII without backslash


def _explicit(element: int, vr: bytes, value: bytes) -> bytes:
    """One explicit VR little endian element of group 0002 with a 2-byte length."""
    return struct.pack("<HH2sH", 0x0002, element, vr, len(value)) + value


def encode_file_meta(sop_class_uid: str, sop_instance_uid: str, transfer_syntax: str,
                     implementation_uid: str, implementation_version: str) -> bytes | None:
    """The File Meta Information (PS3.10 7.1) pynetdicom writes before a dataset received in
    chunked mode, as pydicom's ``write_file_meta_info`` encodes it (after the preamble and
    ``DICM``); None for a value outside plain UIDs and an ASCII version name, which is
    left to pydicom."""
    uids = (sop_class_uid, sop_instance_uid, transfer_syntax, implementation_uid)
    if not all(isinstance(u, str) and _PLAIN_UID.fullmatch(u) for u in uids) or not (
            isinstance(implementation_version, str)
            and _PLAIN_SH.fullmatch(implementation_version)):
        return None
    version = implementation_version.encode("ascii")
    body = b"".join((
        struct.pack("<HH2sHI", 0x0002, 0x0001, b"OB", 0, 2) + b"\x00\x01",  # version 1
        _explicit(0x0002, b"UI", _ui(sop_class_uid)),  # Media Storage SOP Class UID
        _explicit(0x0003, b"UI", _ui(sop_instance_uid)),  # Media Storage SOP Instance UID
        _explicit(0x0010, b"UI", _ui(transfer_syntax)),
        _explicit(0x0012, b"UI", _ui(implementation_uid)),
        _explicit(0x0013, b"SH", version + b" " if len(version) % 2 else version),
    ))
    return _explicit(0x0000, b"UL", struct.pack("<I", len(body))) + body


class _EncodedFileMeta(bytes):
    """File meta bytes from ``encode_file_meta``, standing in for pynetdicom's dataset."""


_ORIGINAL_META: dict[str, Any] = {}


def _create_file_meta(**kwargs: Any) -> Any:
    create = _ORIGINAL_META["create_file_meta"]
    defaults = create.__kwdefaults__ or {}
    values: tuple[Any, ...] = (
        kwargs.get("sop_class_uid"), kwargs.get("sop_instance_uid"),
        kwargs.get("transfer_syntax"),
        kwargs.get("implementation_uid", defaults.get("implementation_uid")),
        kwargs.get("implementation_version", defaults.get("implementation_version")))
    encoded = encode_file_meta(*values)  # values that are not plain strings: pydicom's
    return _EncodedFileMeta(encoded) if encoded is not None else create(**kwargs)


def _write_file_meta_info(fp: Any, file_meta: Any, *args: Any, **kwargs: Any) -> None:
    if isinstance(file_meta, _EncodedFileMeta):
        fp.write(file_meta)
    else:
        _ORIGINAL_META["write_file_meta_info"](fp, file_meta, *args, **kwargs)


def install_fast_file_meta() -> None:
    """Have pynetdicom write the file meta of each dataset it receives in chunked mode from
    ``encode_file_meta``.

    For every C-STORE it builds a pydicom ``FileMetaDataset`` and has pydicom validate and
    write it, group length included (about 0.2 ms, a tenth of a small instance's round
    trip).  The two names ``DIMSEMessage.decode_msg`` calls are replaced in pynetdicom's
    ``dimse_messages`` module only; the bytes are the same (a hypothesis test compares
    them with pynetdicom's and pydicom's own), so doing it for the whole process changes
    nothing anyone can see.
    """
    if _dimse_messages.create_file_meta is _create_file_meta:
        return
    _ORIGINAL_META["create_file_meta"] = _dimse_messages.create_file_meta
    _ORIGINAL_META["write_file_meta_info"] = _dimse_messages.write_file_meta_info
    _dimse_messages.create_file_meta = _create_file_meta
    _dimse_messages.write_file_meta_info = _write_file_meta_info
