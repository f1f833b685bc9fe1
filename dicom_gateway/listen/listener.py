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

pynetdicom's process-wide settings are not changed for the listener: chunked mode and
quiet log handlers are set on its own associations (``pynetdicom_compat.receive_chunked``,
``unbind_standard_log_handlers``), so a C-STORE or C-GET SCU in the same process keeps
pynetdicom's defaults.  (Only if pynetdicom's code differs from the reviewed code does the
listener fall back to setting ``STORE_RECV_CHUNKED_DATASET`` for the whole process.)

The checks of a received instance and their statuses are in ``store_checks``; the
association log and slots in ``association_log``.

Several listener processes can serve one port (``channel``: a
:class:`~dicom_gateway.listen.dispatch.ConnectionDispatcher` accepts and hands each
connection to the least busy of them, so associations use several cores); they then hold
the operator's association limit as one through :class:`AssociationSlots`.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom import Dataset
from pynetdicom import AE, AllStoragePresentationContexts, _config, evt
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from pynetdicom.transport import ThreadedAssociationServer

from dicom_gateway.listen.association_log import (
    AssociationRecord,
    AssociationSink,
    AssociationTracker,
)
from dicom_gateway.listen.config import ListenerLimits, TLSFiles
from dicom_gateway.listen.dispatch import DeferredHandshakeServer, HandedConnectionServer
from dicom_gateway.listen.integrity import InstanceTooLarge, readable
from dicom_gateway.listen.pynetdicom import canary as pynetdicom_canary
from dicom_gateway.listen.pynetdicom.compat import (
    REQUESTED,
    SlotLimitedAE,
    discard_partial_dataset,
    install_pdu_limit,
    install_wakeups,
    receive_chunked,
    remove_wakeups,
    unbind_standard_log_handlers,
)
from dicom_gateway.listen.pynetdicom.encoding import (
    install_fast_file_meta,
    install_fast_store_response,
)
from dicom_gateway.listen.slots import AssociationSlots
from dicom_gateway.listen.store_checks import (
    STATUS_OUT_OF_RESOURCES,
    STATUS_SUCCESS,
    Refusal,
    check_received,
    mismatch,
    unparsable,
)
from dicom_gateway.spool import DurableFolder

__all__ = ["AssociationRecord", "ListenerLimits", "ReceivedInstance", "Sink",
           "StorageListener", "StorageUnavailable", "TLSFiles"]

log = logging.getLogger(__name__)

# Every syntax we can also decode (dicom_gateway.imaging.conversion, pylibjpeg plugins). The order
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


class StorageUnavailable(RuntimeError):
    """Raised by a sink that cannot record an instance (answered as 0xA700)."""


Sink = Callable[[ReceivedInstance], None]


class StorageListener:
    """A pynetdicom Storage SCP that writes to a :class:`DurableFolder` (the spool) and
    reports to a sink."""

    mismatch = staticmethod(mismatch)  # batch intake checks files by the same rule

    def __init__(
        self,
        ae_title: str,
        host: str,
        port: int,
        spool: DurableFolder,
        sink: Sink,
        allowed_calling_aets: tuple[str, ...] = (),
        limits: ListenerLimits | None = None,
        tls: TLSFiles | None = None,
        on_association: AssociationSink | None = None,
        slots: AssociationSlots | None = None,
        channel: socket.socket | None = None,
    ) -> None:
        # each adaptation of pynetdicom's internals only where the code it relies on is
        # the code reviewed (otherwise pynetdicom's own behaviour, and one warning)
        # (a listener process behind a dispatcher: its parent has warned already)
        self._pynetdicom = pynetdicom_canary.verdict() if channel is not None \
            else pynetdicom_canary.checked_at_start()
        if not self._pynetdicom.usable("association_config"):
            # the listener cannot work without chunked mode: the whole process gets it
            _config.STORE_RECV_CHUNKED_DATASET = True
        if self._pynetdicom.usable("fast_file_meta"):
            install_fast_file_meta()  # the same bytes, without a pydicom dataset per C-STORE
        self.ae_title = ae_title
        self.address = (host, port)
        self.spool = spool
        self.sink = sink
        self.limits = limits or ListenerLimits()
        self.tls = tls
        self.on_association = on_association
        self.slots = slots
        self.channel = channel  # connections come from a dispatcher, not our own accept
        self._associations = AssociationTracker(on_association, slots)
        self._ae = self._make_ae(allowed_calling_aets)
        self._server: ThreadedAssociationServer | None = None

    def _make_ae(self, allowed_calling_aets: tuple[str, ...]) -> AE:
        """The AE with our limits, every storage SOP class and Verification."""
        ae = SlotLimitedAE(ae_title=self.ae_title) if self._pynetdicom.usable("slot_limit") \
            else AE(ae_title=self.ae_title)
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
        return ae

    @property
    def port(self) -> int:
        """The bound port (useful when started on port 0)."""
        assert self._server is not None, "listener not started"
        return int(self._server.server_address[1])

    def _handlers(self) -> list[Any]:
        tracker = self._associations
        return [
            (evt.EVT_C_STORE, self.handle_store),
            (evt.EVT_C_ECHO, self.handle_echo),
            (evt.EVT_CONN_OPEN, self._conn_open),
            (evt.EVT_REQUESTED, self._requested),
            (evt.EVT_ACCEPTED, tracker.outcome_handler("accepted")),
            (evt.EVT_REJECTED, tracker.outcome_handler("rejected")),
            (evt.EVT_RELEASED, tracker.outcome_handler("released")),
            (evt.EVT_ABORTED, tracker.outcome_handler("aborted")),
            (evt.EVT_CONN_CLOSE, self._conn_close),
        ]

    def start(self) -> None:
        """Listen on our own port, or serve the connections a dispatcher hands over."""
        ssl_context = self.tls.context() if self.tls else None
        if self.channel is not None:
            if not self._pynetdicom.usable("handed_connections", "slot_limit"):
                raise RuntimeError("pynetdicom's server code differs from the reviewed code: "
                                   "run one listener process (CXR_LISTENER_PROCESSES=1)")
            self._server = self._serve_with(HandedConnectionServer, ssl_context,
                                            channel=self.channel)
        elif ssl_context is not None and self._pynetdicom.usable("tls_handshake"):
            self._server = self._serve_with(DeferredHandshakeServer, ssl_context)
        else:
            self._server = self._ae.start_server(self.address, block=False,
                                                 evt_handlers=self._handlers(),
                                                 ssl_context=ssl_context)
        log.info("listening as %s on %s:%s%s", self.ae_title, self.address[0], self.port,
                 " (TLS)" if ssl_context else "")

    def _serve_with(self, server_class: type, ssl_context: Any, **kwargs: Any) -> Any:
        """Our server class, started the way ``start_server`` starts pynetdicom's own."""
        server = self._ae.make_server(self.address, ssl_context=ssl_context,
                                      evt_handlers=self._handlers(),
                                      server_class=server_class, **kwargs)
        threading.Thread(target=server.serve_forever, name="AcceptorServer",
                         daemon=True).start()
        self._ae._servers.append(server)  # as start_server does; its shutdown expects it
        return server

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    # -- connection and association events -------------------------------------------

    def _limit_pdus(self, assoc: Any) -> bool:
        # the PDU we advertise as our maximum; unlimited: room for an instance somewhat over
        # the instance limit in one PDU, so that it is still read and refused with 0xA700
        limit = self.limits.max_pdu_size or 2 * self.limits.max_instance_bytes + 2**20
        return install_pdu_limit(assoc, limit)

    def _conn_open(self, event: evt.Event) -> None:
        """A connection arrived (before its reactors start): adapt it, shorten its wait."""
        self._associations.record(event)
        assoc: Any = event.assoc
        # pynetdicom waits acse_timeout for the A-ASSOCIATE-RQ (and its DUL's ARTIM timer
        # runs as long); a connection that says nothing is closed after this shorter wait.
        # The ACSE timeout proper is put back when the request arrives.
        if self._pynetdicom.usable("slot_limit"):
            assoc.acse_timeout = self.limits.association_request_seconds
        self._configure(assoc)
        # no idle sleeps between messages; responses without a pydicom encoding pass
        per_association = (("wakeups", install_wakeups),
                           ("fast_store_response", install_fast_store_response),
                           ("pdu_limit", self._limit_pdus))
        if not all(install(assoc) for name, install in per_association
                   if self._pynetdicom.usable(name)):
            log.warning("pynetdicom's own message path is used on this association "
                        "(objects not as dicom_gateway/listen/pynetdicom/compat.py expects)")
        # Small C-STORE responses must not wait for Nagle's algorithm (each would cost a
        # delayed-ACK round, about 40 ms on Linux).
        sock = getattr(getattr(assoc.dul, "socket", None), "socket", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _configure(self, assoc: Any) -> None:
        """pynetdicom's settings for this association only: chunked mode, and (when
        pynetdicom's log shows nothing below WARNING) no standard log handlers, which
        format every PDU and DIMSE message anyway (about 0.2 ms per C-STORE)."""
        if not self._pynetdicom.usable("association_config"):
            return  # chunked mode was set for the process; pynetdicom's own log handlers
        if not receive_chunked(assoc):
            log.warning("pynetdicom's association is not as dicom_gateway/listen/pynetdicom/compat"
                        ".py expects: chunked mode set for the whole process")
            _config.STORE_RECV_CHUNKED_DATASET = True
        if not logging.getLogger("pynetdicom").isEnabledFor(logging.INFO):
            unbind_standard_log_handlers(assoc)

    def _requested(self, event: evt.Event) -> None:
        """The A-ASSOCIATE-RQ arrived (in the association's thread, before negotiation):
        only now does the connection count against the association limit."""
        self._associations.named(event).outcome = "requested"
        assoc: Any = event.assoc
        assoc.acse_timeout = self.limits.acse_timeout
        setattr(assoc, REQUESTED, True)
        self._associations.take_slot(assoc)

    def _conn_close(self, event: evt.Event) -> None:
        tracker = self._associations
        tracker.release_slot(event.assoc)
        remove_wakeups(event.assoc)
        partial = discard_partial_dataset(event.assoc) \
            if self._pynetdicom.usable("partial_cleanup") else None
        rec = tracker.record(event)
        if partial is not None:
            log.warning("association from %s ended mid-transfer: partial dataset removed",
                        rec.peer)
        if rec.outcome == "open":  # a connection that never asked for an association
            log.info("connection from %s closed without an A-ASSOCIATE-RQ (the gateway "
                     "waits %.0f s for one)", rec.peer, self.limits.association_request_seconds)
            tracker.finish(rec, "closed")

    # -- services -------------------------------------------------------------------

    def handle_echo(self, event: evt.Event) -> int:
        return STATUS_SUCCESS

    def handle_store(self, event: evt.Event) -> int | Dataset:
        outcome = self._store(event)
        self._associations.count_store(event, outcome)
        if outcome == STATUS_SUCCESS:
            return STATUS_SUCCESS
        refusal = outcome if isinstance(outcome, Refusal) else Refusal(outcome, "")
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
        checked = self._checked(event, received, sop_uid)
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

    def _checked(self, event: evt.Event, received: Path, sop_uid: str
                 ) -> tuple[Dataset, str] | Refusal:
        """The received file (inflated as a capped stream if deflated) checked."""
        req: Any = event.request
        try:
            with readable(received, str(event.context.transfer_syntax),
                          self.limits.max_instance_bytes) as plain:
                return check_received(plain, sop_uid, str(req.AffectedSOPClassUID))
        except InstanceTooLarge as exc:
            # 0xA700 "out of resources": the instance may well be valid, it is this
            # gateway's configured resource (CXR_MAX_INSTANCE_MB) that it exceeds.  Not
            # 0xC000 or 0xA900, which would tell the sender its data is at fault.
            return Refusal(STATUS_OUT_OF_RESOURCES, str(exc))
        except Exception as exc:  # noqa: BLE001 - a deflate stream that does not inflate
            return unparsable(exc)
