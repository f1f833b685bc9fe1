"""A batch's DICOM instances taken in as the listener takes in a received one.

A folder's files, a DICOMweb server's parts and a C-GET's datasets never cross the
listener, so they get its checks here (the command-match rules, whole pixel data), are
written through the spool and recorded by the same sink; from there on assembly,
admission and the pipeline cannot tell them from live traffic.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from pydicom import dcmread

from dicom_gateway.listen.integrity import pixel_data_problem
from dicom_gateway.listen.listener import ReceivedInstance, StorageListener
from worker.ingest.sink import InstanceRecorder
from worker.runtime import Runtime

CALLING_AE = "CXRBATCH"  # the calling AE title recorded for a batch's instances


class DicomIntake:
    """Spools and records one run's DICOM instances; one bad instance never stops a run."""

    def __init__(self, rt: Runtime, run_name: str) -> None:
        self.spool = rt.spool
        self.recorder = InstanceRecorder(rt.db)
        self.peer = f"batch:{run_name}"[:64]

    def take(self, data: bytes | Path) -> str | None:
        """Spool and record one DICOM instance (a file, or retrieved bytes); why it was
        refused, or None."""
        tmp: Path | None = None
        if isinstance(data, Path):
            path = data
        else:  # retrieved bytes: through a temporary file in the spool's own .tmp
            tmp = path = self.spool.tmp / f"batch-{os.getpid()}-{time.monotonic_ns()}.dcm"
            tmp.write_bytes(data)
        try:
            return self._take_file(path)
        except Exception as exc:  # noqa: BLE001 - one bad file does not stop a run
            return f"cannot read {type(exc).__name__}"
        finally:
            if tmp is not None:
                tmp.unlink(missing_ok=True)

    def _take_file(self, path: Path) -> str | None:
        """The listener's checks, then spool and record; why it was refused, or None."""
        ds = dcmread(path, defer_size=1024)
        problem = StorageListener.mismatch(ds, str(ds.get("SOPInstanceUID", "")),
                                           str(ds.get("SOPClassUID", "")))
        broken = problem or (pixel_data_problem(ds, path) or None)
        if broken:
            return str(getattr(broken, "reason", broken))
        with path.open("rb") as fh:
            spooled = self.spool.write(ds.StudyInstanceUID, ds.SOPInstanceUID,
                                       iter(lambda: fh.read(1 << 20), b""))
        ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "")
        self.recorder(ReceivedInstance(
            sop_instance_uid=str(ds.SOPInstanceUID), sop_class_uid=str(ds.SOPClassUID),
            study_instance_uid=str(ds.StudyInstanceUID),
            series_instance_uid=str(ds.SeriesInstanceUID),
            modality=str(ds.get("Modality", "")), transfer_syntax_uid=str(ts),
            path=spooled.path, size=spooled.size, sha256=spooled.sha256,
            calling_ae=CALLING_AE, peer=self.peer))
        return None
