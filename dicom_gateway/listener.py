"""The C-ECHO / C-STORE listener.

The one promise this module keeps: 0x0000 is answered only after the received bytes
are fsynced in the spool *and* the caller's ``sink`` (the database, wired in by
``worker/``) has recorded them.  Everything else gets the specific PS3.4 Annex B
status: 0xA700 out of resources, 0xA900 dataset does not match the command,
0xC000 cannot understand.  Patient identifiers are never logged; UIDs are.
"""

from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.errors import InvalidDicomError
from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from pynetdicom.transport import ThreadedAssociationServer

from dicom_gateway.spool import Spool
from dicom_gateway.uids import is_valid_uid

log = logging.getLogger(__name__)

STATUS_SUCCESS = 0x0000
STATUS_OUT_OF_RESOURCES = 0xA700
STATUS_DATASET_MISMATCH = 0xA900
STATUS_CANNOT_UNDERSTAND = 0xC000


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
    """A pynetdicom Storage SCP that writes to a :class:`Spool` and reports to a sink."""

    def __init__(
        self,
        ae_title: str,
        host: str,
        port: int,
        spool: Spool,
        sink: Sink,
        allowed_calling_aets: tuple[str, ...] = (),
        min_free_bytes: int = 0,
    ) -> None:
        self.ae_title = ae_title
        self.address = (host, port)
        self.spool = spool
        self.sink = sink
        self.min_free_bytes = min_free_bytes
        self._ae = AE(ae_title=ae_title)
        self._ae.maximum_pdu_size = 0
        self._ae.require_calling_aet = list(allowed_calling_aets)
        self._ae.require_called_aet = True
        for cx in AllStoragePresentationContexts:
            assert cx.abstract_syntax is not None
            self._ae.add_supported_context(cx.abstract_syntax)
        self._ae.add_supported_context(Verification)
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
        ]
        self._server = self._ae.start_server(self.address, block=False, evt_handlers=handlers)
        log.info("listening as %s on %s:%s", self.ae_title, self.address[0], self.port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    def handle_echo(self, event: evt.Event) -> int:
        return STATUS_SUCCESS

    def handle_store(self, event: evt.Event) -> int | tuple[int, Any]:
        """Spool, record, then acknowledge; any doubt is a failure status."""
        assoc = event.assoc
        calling = assoc.requestor.ae_title.strip()
        peer = f"{assoc.requestor.address}:{assoc.requestor.port}"
        req: Any = event.request
        if self.min_free_bytes and shutil.disk_usage(self.spool.root).free < self.min_free_bytes:
            log.warning("refusing %s: free disk below watermark", req.AffectedSOPInstanceUID)
            return STATUS_OUT_OF_RESOURCES
        raw = event.encoded_dataset(include_meta=True)
        try:
            ds = dcmread(BytesIO(raw), stop_before_pixels=True)
        except (InvalidDicomError, ValueError, EOFError, TypeError, KeyError) as exc:
            log.warning("cannot parse dataset %s: %s", req.AffectedSOPInstanceUID, exc)
            return STATUS_CANNOT_UNDERSTAND
        problem = self._mismatch(ds, req.AffectedSOPInstanceUID, req.AffectedSOPClassUID)
        if problem:
            log.warning("dataset %s does not match: %s", req.AffectedSOPInstanceUID, problem)
            return STATUS_DATASET_MISMATCH
        spooled = self.spool.write(ds.StudyInstanceUID, ds.SOPInstanceUID, [raw])
        received = ReceivedInstance(
            sop_instance_uid=str(ds.SOPInstanceUID),
            sop_class_uid=str(ds.SOPClassUID),
            study_instance_uid=str(ds.StudyInstanceUID),
            series_instance_uid=str(ds.get("SeriesInstanceUID", "")),
            modality=str(ds.get("Modality", "")),
            transfer_syntax_uid=str(event.context.transfer_syntax),
            path=spooled.path,
            size=spooled.size,
            sha256=spooled.sha256,
            calling_ae=calling,
            peer=peer,
        )
        try:
            self.sink(received)
        except Exception as exc:  # noqa: BLE001 - any failure to record means "not stored"
            log.error("cannot record %s: %s", received.sop_instance_uid, exc)
            if not spooled.existed:
                self.spool.remove(spooled.path)
            return STATUS_OUT_OF_RESOURCES
        log.info(
            "stored %s (study %s, %s, %d bytes) from %s",
            received.sop_instance_uid, received.study_instance_uid, received.modality,
            received.size, calling,
        )
        return STATUS_SUCCESS

    @staticmethod
    def _mismatch(ds: Any, sop_instance_uid: str, sop_class_uid: str) -> str | None:
        if ds.get("SOPInstanceUID") != sop_instance_uid:
            return "SOPInstanceUID differs from the command's Affected SOP Instance UID"
        if ds.get("SOPClassUID") != sop_class_uid:
            return "SOPClassUID differs from the command's Affected SOP Class UID"
        for keyword in ("SOPInstanceUID", "StudyInstanceUID"):
            if not is_valid_uid(ds.get(keyword)):
                return f"{keyword} missing or invalid"
        return None
