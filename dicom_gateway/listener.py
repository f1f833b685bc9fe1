"""The C-ECHO / C-STORE listener.

The one promise this module keeps: 0x0000 is answered only after the received bytes
are fsynced in the spool *and* the caller's ``sink`` (the database, wired in by
``worker/``) has recorded them.  Everything else gets the specific PS3.4 Annex B
status: 0xA700 out of resources (disk under the watermark, database unreachable, an
instance over the size limit), 0xA900 dataset does not match the command, lacks
mandatory attributes or holds less pixel data than its header declares, 0xC000 cannot
understand (including encapsulated pixel data whose items do not parse).  Patient
identifiers are never logged; UIDs are.

Datasets are received in pynetdicom's chunked mode: written to a temporary file as
they arrive (never held whole in memory), then moved into the spool, so a large image
costs one write, not several copies.  An instance over ``max_instance_bytes`` (a
deflated one: once inflated, which is done as a capped stream) is refused before it is
parsed, so no sender can make the listener hold more than a header in memory.

A connection holds an association slot only from its A-ASSOCIATE-RQ on, and one that
sends none within ``association_request_seconds`` is closed: connections that never
speak cannot lock real senders out.

Several listener processes can serve one port (``channel``: a
:class:`~dicom_gateway.connection_dispatch.ConnectionDispatcher` accepts and hands each
connection to the least busy of them, so associations use several cores); they then hold
the operator's association limit as one through :class:`AssociationSlots`.
"""

from __future__ import annotations

import contextlib
import logging
import re
import shutil
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydicom import Dataset, dcmread
from pydicom.uid import UID
from pynetdicom import AE, AllStoragePresentationContexts, _config, evt
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from pynetdicom.transport import ThreadedAssociationServer

from dicom_gateway import pynetdicom_canary
from dicom_gateway.association_slots import AssociationSlots, Slot
from dicom_gateway.connection_dispatch import HandedConnectionServer
from dicom_gateway.integrity import (
    DEFAULT_MAX_INSTANCE_BYTES,
    InstanceTooLarge,
    PixelProblem,
    pixel_data_problem,
    readable,
)
from dicom_gateway.pynetdicom_compat import (
    OVER_LIMIT,
    REQUESTED,
    SlotLimitedAE,
    discard_partial_dataset,
    install_fast_file_meta,
    install_fast_store_response,
    install_wakeups,
    remove_wakeups,
)
from dicom_gateway.spool import Spool
from dicom_gateway.uids import is_valid_uid

log = logging.getLogger(__name__)

STATUS_SUCCESS = 0x0000
STATUS_OUT_OF_RESOURCES = 0xA700
STATUS_DATASET_MISMATCH = 0xA900
STATUS_CANNOT_UNDERSTAND = 0xC000

# Every syntax we can also decode (dicom_gateway.conversion, pylibjpeg plugins). The order
# is pynetdicom's preference when a proposal offers several: explicit VR first.
TRANSFER_SYNTAXES = [
    "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
    "1.2.840.10008.1.2",  # Implicit VR Little Endian
    "1.2.840.10008.1.2.1.99",  # Deflated Explicit VR Little Endian
    "1.2.840.10008.1.2.2",  # Explicit VR Big Endian (retired, still sent)
    "1.2.840.10008.1.2.4.50",  # JPEG Baseline (Process 1)
    "1.2.840.10008.1.2.4.51",  # JPEG Extended (Process 2 & 4)
    "1.2.840.10008.1.2.4.57",  # JPEG Lossless (Process 14)
    "1.2.840.10008.1.2.4.70",  # JPEG Lossless SV1 (Process 14, selection value 1)
    "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.81",  # JPEG-LS Near-Lossless
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless
    "1.2.840.10008.1.2.4.91",  # JPEG 2000
    "1.2.840.10008.1.2.5",  # RLE Lossless
]
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
MANDATORY = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")


@dataclass(frozen=True)
class ReceivedInstance:
    """What the sink records for one stored instance (no patient data)."""

    sop_instance_uid: str
    sop_class_uid: str
    study_instance_uid: str
    series_instance_uid: str
    modality: str
    transfer_syntax_uid: str
    path: Path
    size: int
    sha256: str
    calling_ae: str
    peer: str


@dataclass
class AssociationRecord:
    """One association's log entry, handed to ``on_association`` when the connection closes."""

    peer: str
    started_at: float
    calling_ae: str = ""
    called_ae: str = ""
    ended_at: float = 0.0
    stored: int = 0
    failed: int = 0
    outcome: str = "open"  # requested -> accepted -> released | aborted; or rejected
    statuses: dict[str, int] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)  # "0xA700: why", the first few


@dataclass(frozen=True)
class ListenerLimits:
    max_associations: int = 25
    max_pdu_size: int = 0  # 0 = unlimited: fewer, larger PDUs are much faster
    acse_timeout: float = 30.0
    dimse_timeout: float = 30.0
    network_timeout: float = 60.0
    min_free_bytes: int = 0
    max_instance_bytes: int = DEFAULT_MAX_INSTANCE_BYTES
    association_request_seconds: float = 5.0


@dataclass(frozen=True)
class Refusal:
    """A failure status for one C-STORE and why (logged, and sent as its ErrorComment)."""

    status: int
    reason: str

    def response(self) -> Dataset:
        ds = Dataset()
        ds.Status = self.status
        # LO: at most 64 characters, no backslash or control characters
        ds.ErrorComment = re.sub(r"[^ -\[\]-~]", "?", self.reason)[:64]
        return ds


MAX_REASONS = 5  # an association log entry keeps the first few distinct refusal reasons


@dataclass(frozen=True)
class TLSFiles:
    certificate: Path
    private_key: Path
    client_ca: Path | None = None  # when set, clients must present a certificate it signed

    def context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(str(self.certificate), str(self.private_key))
        if self.client_ca is not None:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(str(self.client_ca))
        return ctx


class StorageUnavailable(RuntimeError):
    """Raised by a sink that cannot record an instance (answered as 0xA700)."""


Sink = Callable[[ReceivedInstance], None]
AssociationSink = Callable[[AssociationRecord], None]


def _is_image_storage(sop_class_uid: str) -> bool:
    return "Image Storage" in UID(sop_class_uid).name


class StorageListener:
    """A pynetdicom Storage SCP that writes to a :class:`Spool` and reports to a sink."""

    def __init__(
        self,
        ae_title: str,
        host: str,
        port: int,
        spool: Spool,
        sink: Sink,
        allowed_calling_aets: tuple[str, ...] = (),
        limits: ListenerLimits | None = None,
        tls: TLSFiles | None = None,
        on_association: AssociationSink | None = None,
        slots: AssociationSlots | None = None,
        channel: socket.socket | None = None,
    ) -> None:
        _config.STORE_RECV_CHUNKED_DATASET = True
        # each adaptation of pynetdicom's internals only where the code it relies on is
        # the code reviewed (otherwise pynetdicom's own behaviour, and one warning)
        # (a listener process behind a dispatcher: its parent has warned already)
        self._pynetdicom = pynetdicom_canary.verdict() if channel is not None \
            else pynetdicom_canary.checked_at_start()
        if self._pynetdicom.usable("fast_file_meta"):
            install_fast_file_meta()  # the same bytes, without a pydicom dataset per C-STORE
        if not logging.getLogger("pynetdicom").isEnabledFor(logging.INFO):
            # pynetdicom's standard handlers format every PDU and DIMSE message for the
            # log even when nothing below WARNING is shown (about 0.2 ms per C-STORE).
            _config.LOG_HANDLER_LEVEL = "none"
        self.ae_title = ae_title
        self.address = (host, port)
        self.spool = spool
        self.sink = sink
        self.limits = limits or ListenerLimits()
        self.tls = tls
        self.on_association = on_association
        self.slots = slots
        self.channel = channel  # connections come from a dispatcher, not our own accept
        ae = SlotLimitedAE(ae_title=ae_title) if self._pynetdicom.usable("slot_limit") \
            else AE(ae_title=ae_title)
        ae.maximum_pdu_size = self.limits.max_pdu_size
        ae.maximum_associations = self.limits.max_associations
        ae.acse_timeout = self.limits.acse_timeout
        ae.dimse_timeout = self.limits.dimse_timeout
        ae.network_timeout = self.limits.network_timeout
        ae.require_calling_aet = list(allowed_calling_aets)
        ae.require_called_aet = True
        for cx in AllStoragePresentationContexts:
            assert cx.abstract_syntax is not None
            ae.add_supported_context(cx.abstract_syntax, TRANSFER_SYNTAXES)
        ae.add_supported_context(Verification)
        self._ae = ae
        self._server: ThreadedAssociationServer | None = None
        self._lock = threading.Lock()

    @property
    def port(self) -> int:
        """The bound port (useful when started on port 0)."""
        assert self._server is not None, "listener not started"
        return int(self._server.server_address[1])

    def start(self) -> None:
        handlers: list[Any] = [
            (evt.EVT_C_STORE, self.handle_store),
            (evt.EVT_C_ECHO, self.handle_echo),
            (evt.EVT_CONN_OPEN, self._conn_open),
            (evt.EVT_REQUESTED, self._requested),
            (evt.EVT_ACCEPTED, self._outcome("accepted")),
            (evt.EVT_REJECTED, self._outcome("rejected")),
            (evt.EVT_RELEASED, self._outcome("released")),
            (evt.EVT_ABORTED, self._outcome("aborted")),
            (evt.EVT_CONN_CLOSE, self._conn_close),
        ]
        ssl_context = self.tls.context() if self.tls else None
        if self.channel is not None:
            if not self._pynetdicom.usable("handed_connections", "slot_limit"):
                raise RuntimeError("pynetdicom's server code differs from the reviewed code: "
                                   "run one listener process (CXR_LISTENER_PROCESSES=1)")
            server = self._ae.make_server(self.address, ssl_context=ssl_context,
                                          evt_handlers=handlers,
                                          server_class=HandedConnectionServer,
                                          channel=self.channel)
            threading.Thread(target=server.serve_forever, name="AcceptorServer",
                             daemon=True).start()
            self._ae._servers.append(server)  # as start_server does; its shutdown expects it
            self._server = server
        else:
            self._server = self._ae.start_server(self.address, block=False,
                                                 evt_handlers=handlers, ssl_context=ssl_context)
        log.info("listening as %s on %s:%s%s", self.ae_title, self.address[0], self.port,
                 " (TLS)" if ssl_context else "")

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    # -- association log ------------------------------------------------------------
    # A record lives on its Association object.  It is written once: at the first of
    # released / aborted / rejected, or at connection close for a connection that never
    # asked for an association (pynetdicom may report the close of a rejected
    # association before the rejection itself).

    def _record(self, event: evt.Event) -> AssociationRecord:
        assoc: Any = event.assoc
        with self._lock:
            rec: AssociationRecord | None = getattr(assoc, "_cxr_record", None)
            if rec is None:
                req = assoc.requestor
                rec = AssociationRecord(peer=f"{req.address}:{req.port}", started_at=time.time())
                assoc._cxr_record = rec
            return rec

    def _conn_open(self, event: evt.Event) -> None:
        self._record(event)
        # pynetdicom waits acse_timeout for the A-ASSOCIATE-RQ (and its DUL's ARTIM timer
        # runs as long); a connection that says nothing is closed after this shorter wait.
        # The ACSE timeout proper is put back when the request arrives.
        if self._pynetdicom.usable("slot_limit"):
            event.assoc.acse_timeout = self.limits.association_request_seconds
        # no idle sleeps between messages; responses without a pydicom encoding pass
        per_association = (("wakeups", install_wakeups),
                           ("fast_store_response", install_fast_store_response))
        if not all(install(event.assoc) for name, install in per_association
                   if self._pynetdicom.usable(name)):
            log.warning("pynetdicom's own message path is used on this association "
                        "(objects not as dicom_gateway/pynetdicom_compat.py expects)")
        # Small C-STORE responses must not wait for Nagle's algorithm (each would cost a
        # delayed-ACK round, about 40 ms on Linux).
        sock = getattr(getattr(event.assoc.dul, "socket", None), "socket", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _requested(self, event: evt.Event) -> None:
        """The A-ASSOCIATE-RQ arrived (in the association's thread, before negotiation):
        only now does the connection count against the association limit."""
        self._names(event).outcome = "requested"
        assoc: Any = event.assoc
        assoc.acse_timeout = self.limits.acse_timeout
        setattr(assoc, REQUESTED, True)
        if self.slots is None:
            return
        slot = self.slots.acquire()
        if slot is None:  # negotiation will answer A-ASSOCIATE-RJ, local limit exceeded
            setattr(assoc, OVER_LIMIT, True)
            log.warning("association from %s:%s rejected: all %d association slots "
                        "of this port are busy", assoc.requestor.address,
                        assoc.requestor.port, self.slots.count)
        else:
            with self._lock:
                assoc._cxr_slot = slot

    def _names(self, event: evt.Event) -> AssociationRecord:
        rec = self._record(event)
        rec.calling_ae = rec.calling_ae or str(event.assoc.requestor.ae_title).strip()
        rec.called_ae = rec.called_ae or str(event.assoc.acceptor.ae_title).strip()
        return rec

    def _outcome(self, outcome: str) -> Callable[[evt.Event], None]:
        def handler(event: evt.Event) -> None:
            rec = self._names(event)  # a rejection comes before EVT_REQUESTED
            if outcome == "accepted":
                rec.outcome = outcome
            else:
                self._release_slot(event.assoc)
                self._finish(rec, outcome)
        return handler

    def _release_slot(self, assoc: Any) -> None:
        with self._lock:
            slot: Slot | None = getattr(assoc, "_cxr_slot", None)
            assoc._cxr_slot = None
        if slot is not None and self.slots is not None:
            self.slots.release(slot)

    def _conn_close(self, event: evt.Event) -> None:
        self._release_slot(event.assoc)
        remove_wakeups(event.assoc)
        partial = discard_partial_dataset(event.assoc) \
            if self._pynetdicom.usable("partial_cleanup") else None
        if partial is not None:
            log.warning("association from %s ended mid-transfer: partial dataset removed",
                        self._record(event).peer)
        rec = self._record(event)
        if rec.outcome == "open":  # a connection that never asked for an association
            log.info("connection from %s closed without an A-ASSOCIATE-RQ (the gateway "
                     "waits %.0f s for one)", rec.peer, self.limits.association_request_seconds)
            self._finish(rec, "closed")

    def _finish(self, rec: AssociationRecord, outcome: str) -> None:
        with self._lock:
            if rec.ended_at:
                return
            rec.ended_at = time.time()
            rec.outcome = outcome
        log.info("association from %s (%s) %s: %d stored, %d failed%s", rec.calling_ae,
                 rec.peer, rec.outcome, rec.stored, rec.failed,
                 f" ({'; '.join(rec.reasons)})" if rec.reasons else "")
        if self.on_association is not None:
            try:
                self.on_association(rec)
            except Exception:  # the log must never take the listener down
                log.exception("cannot record the association log")

    # -- services -------------------------------------------------------------------

    def handle_echo(self, event: evt.Event) -> int:
        return STATUS_SUCCESS

    def handle_store(self, event: evt.Event) -> int | Dataset:
        outcome = self._store(event)
        rec = self._record(event)
        if outcome == STATUS_SUCCESS:
            rec.stored += 1
            return STATUS_SUCCESS
        refusal = outcome if isinstance(outcome, Refusal) else Refusal(outcome, "")
        rec.failed += 1
        key = f"0x{refusal.status:04X}"
        rec.statuses[key] = rec.statuses.get(key, 0) + 1
        reason = f"{key}: {refusal.reason}"
        if refusal.reason and reason not in rec.reasons and len(rec.reasons) < MAX_REASONS:
            rec.reasons.append(reason)
        return refusal.response() if refusal.reason else refusal.status

    def _store(self, event: evt.Event) -> int | Refusal:
        """Check, spool, record, then acknowledge; any doubt is a failure status."""
        req: Any = event.request
        sop_uid = str(req.AffectedSOPInstanceUID)
        if self.limits.min_free_bytes and \
                shutil.disk_usage(self.spool.root).free < self.limits.min_free_bytes:
            log.warning("refusing %s: free disk below the watermark", sop_uid)
            return Refusal(STATUS_OUT_OF_RESOURCES, "free disk below the watermark")
        received = Path(event.dataset_path)
        try:
            with readable(received, str(event.context.transfer_syntax),
                          self.limits.max_instance_bytes) as plain:
                checked = self._check(plain, sop_uid, str(req.AffectedSOPClassUID))
        except InstanceTooLarge as exc:
            # 0xA700 "out of resources": the instance may well be valid, it is this
            # gateway's configured resource (CXR_MAX_INSTANCE_MB) that it exceeds.  Not
            # 0xC000 or 0xA900, which would tell the sender its data is at fault.
            checked = Refusal(STATUS_OUT_OF_RESOURCES, str(exc))
        except Exception as exc:  # noqa: BLE001 - a deflate stream that does not inflate
            checked = self._unparsable(exc)
        if isinstance(checked, Refusal):
            log.warning("dataset %s refused (0x%04X): %s", sop_uid, checked.status,
                        checked.reason)
            return checked
        ds, modality = checked
        try:
            spooled = self.spool.adopt(ds.StudyInstanceUID, ds.SOPInstanceUID, received)
        except OSError as exc:
            log.error("cannot spool %s: %s", sop_uid, exc)
            return Refusal(STATUS_OUT_OF_RESOURCES, "the spool cannot be written")
        assoc = event.assoc
        instance = ReceivedInstance(
            sop_instance_uid=str(ds.SOPInstanceUID),
            sop_class_uid=str(ds.SOPClassUID),
            study_instance_uid=str(ds.StudyInstanceUID),
            series_instance_uid=str(ds.SeriesInstanceUID),
            modality=modality,
            transfer_syntax_uid=str(event.context.transfer_syntax),
            path=spooled.path,
            size=spooled.size,
            sha256=spooled.sha256,
            calling_ae=assoc.requestor.ae_title.strip(),
            peer=f"{assoc.requestor.address}:{assoc.requestor.port}",
        )
        try:
            self.sink(instance)
        except Exception as exc:  # any failure to record means "not stored"
            log.error("cannot record %s: %s", instance.sop_instance_uid, exc)
            if not spooled.existed:
                self.spool.remove(spooled.path)
            return Refusal(STATUS_OUT_OF_RESOURCES, "the database cannot record it")
        log.info("stored %s (study %s, %s, %d bytes) from %s", instance.sop_instance_uid,
                 instance.study_instance_uid, instance.modality, instance.size,
                 instance.calling_ae)
        return STATUS_SUCCESS

    def _check(self, path: Path, sop_uid: str, sop_class_uid: str
               ) -> tuple[Dataset, str] | Refusal:
        """Parse the header of ``path`` and check the instance is whole and matches its
        command: the dataset and its Modality, or the refusal."""
        try:
            # Header only: large values (the pixels) stay on disk.  Values are converted
            # lazily, so everything the checks touch is read inside this try.
            ds = dcmread(path, defer_size=1024)
            if len(ds) == 0:  # pydicom gives up quietly on some malformed values
                raise ValueError("no data element could be read")
            problem = self.mismatch(ds, sop_uid, sop_class_uid)
            modality = str(ds.get("Modality", ""))
        except Exception as exc:  # noqa: BLE001 - any decoding failure is "cannot understand"
            return self._unparsable(exc)
        if problem:
            return Refusal(STATUS_DATASET_MISMATCH, problem)
        try:
            broken = pixel_data_problem(ds, path)
        except Exception as exc:  # noqa: BLE001 - a header we cannot even measure
            broken = PixelProblem(f"pixel data cannot be checked: {exc}", parses=False)
        if broken:
            status = STATUS_DATASET_MISMATCH if broken.parses else STATUS_CANNOT_UNDERSTAND
            return Refusal(status, f"not whole: {broken.reason}")
        return ds, modality

    @staticmethod
    def _unparsable(exc: Exception) -> Refusal:
        # the reader's message may quote a value from the header: quote nothing
        message = _QUOTED.sub("'...'", str(exc))[:200]
        return Refusal(STATUS_CANNOT_UNDERSTAND,
                       f"cannot parse: {type(exc).__name__}: {message}")

    @staticmethod
    def mismatch(ds: Any, sop_instance_uid: str, sop_class_uid: str) -> str | None:
        """Why the dataset does not match its command (PS3.4 B.2.3 0xA900), or None."""
        for keyword in MANDATORY:
            if not is_valid_uid(ds.get(keyword)):
                return f"{keyword} missing or not a valid UID"
        if ds.SOPInstanceUID != sop_instance_uid:
            return "SOPInstanceUID differs from the command's Affected SOP Instance UID"
        if ds.SOPClassUID != sop_class_uid:
            return "SOPClassUID differs from the command's Affected SOP Class UID"
        if _is_image_storage(sop_class_uid) and not any(
                k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
            return "image storage SOP instance without pixel data"
        return None
