"""The few places where the listener relies on pynetdicom internals, kept in one file.

pynetdicom gives no public hook for them; each is small, and
``tests/test_pynetdicom_compat.py`` fails when an upgrade changes the code they rely on
(the names below, read from pynetdicom's own source), so a silent change cannot slip in.

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
  standard A-ASSOCIATE-RJ, turns it away.
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

# What this module reads, for the compatibility test.
RELIES_ON = {
    "pynetdicom.association.Association._run_reactor": ("time.sleep(0.001)",
                                                       "self.dimse.get_msg(block=False)"),
    "pynetdicom.dul.DULServiceProvider.run_reactor": ("time.sleep(self._run_loop_delay)",
                                                     "self._process_recv_primitive()",
                                                     "self._is_transport_event()"),
    "pynetdicom.dul.DULServiceProvider.__init__": ("self.to_provider_queue",),
    "pynetdicom.dul.DULServiceProvider._process_recv_primitive": (
        "self.to_provider_queue.queue[0]",),
    "pynetdicom.dimse.DIMSEServiceProvider.__init__": ("self.msg_queue",),
    "pynetdicom.dimse.DIMSEServiceProvider.receive_primitive": ("self.msg_queue.put(",
                                                                "self.message = None"),
    "pynetdicom.dimse_messages.DIMSEMessage.decode_msg": (
        "_data_set_file", "_data_set_path", "NamedTemporaryFile(delete=False",
        "write_file_meta_info(", "create_file_meta(", "sop_class_uid=sop_class,",
        "sop_instance_uid=sop_instance,", "transfer_syntax=cx.transfer_syntax[0],"),
    "pynetdicom.acse.ACSE._negotiate_as_acceptor": (
        "self.assoc.ae.active_associations", "> self.assoc.ae.maximum_associations",
        "reject_assoc_rsd = (0x02, 0x03, 0x02)"),
    "pynetdicom.dimse.DIMSEServiceProvider.send_msg": (
        "evt.trigger(self.assoc, evt.EVT_DIMSE_SENT",
        "for pdata in dimse_msg.encode_msg(context_id, self.maximum_pdu_size):",
        "self.dul.send_pdu(pdata)"),
    "pynetdicom.service_class.StorageServiceClass.SCP": ("self.dimse.send_msg(rsp, cx_id)",),
    # HandedConnectionServer (connection_dispatch.py) stands in for the bound socket and
    # for accept(), then wraps TLS as pynetdicom's get_request does
    "pynetdicom.transport.AssociationServer.__init__": ("bind_and_activate=True",),
    "pynetdicom.transport.AssociationServer.get_request": (
        "self.socket.accept()", "self.ssl_context.wrap_socket("),
    "pynetdicom.ae.ApplicationEntity.make_server": ("**kwargs",),
    # StorageListener starts a HandedConnectionServer the way start_server starts its own
    "pynetdicom.ae.ApplicationEntity.start_server": ("self._servers.append(server)",),
    "pynetdicom.transport.AssociationServer.shutdown": ("self.ae._servers.remove(",),
}

OVER_LIMIT = "_cxr_over_limit"  # set on an Association whose connection got no slot


class SlotLimitedAE(AE):
    """An AE whose association limit is 0 for an association marked over the limit.

    pynetdicom reads ``maximum_associations`` in the association's thread while it
    negotiates; everywhere else (and for every other association) the limit is the one
    configured.
    """

    @property
    def maximum_associations(self) -> int:
        if getattr(threading.current_thread(), OVER_LIMIT, False):
            return 0
        return int(self._maximum_associations)

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

    def assoc_wait(seconds: float) -> None:
        message.wait(seconds)
        message.clear()

    dimse.msg_queue = _WakingQueue(message.set)
    assoc._cxr_wait = assoc_wait

    reader, writer = socket.socketpair()
    reader.setblocking(False)
    writer.setblocking(False)

    def poke() -> None:
        with contextlib.suppress(OSError):  # full (already poked) or closed: fine
            writer.send(b"\0")

    def dul_wait(seconds: float) -> None:
        try:
            ready, _, _ = select.select([raw, reader], [], [], seconds)
        except (OSError, ValueError):  # the socket closed under us: as before
            _time.sleep(seconds)
            return
        if reader in ready:
            with contextlib.suppress(OSError):
                reader.recv(4096)

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
