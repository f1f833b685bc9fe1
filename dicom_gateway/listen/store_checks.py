"""What a received C-STORE is checked for, and the failure status each problem earns.

The listener answers 0x0000 only for an instance that is whole and matches its command;
everything else gets the specific PS3.4 Annex B status and a reason (logged, and sent as
the response's ErrorComment): 0xA700 out of resources, 0xA900 dataset does not match the
command, lacks mandatory attributes or holds less pixel data than its header declares,
0xC000 cannot understand.  Kept apart from the association handling so that batch
intake (``worker/research``) applies the same rules to files it reads itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom import Dataset, dcmread
from pydicom.uid import UID

from dicom_gateway.listen.integrity import PixelProblem, pixel_data_problem
from dicom_gateway.uids import is_valid_uid

STATUS_SUCCESS = 0x0000
STATUS_OUT_OF_RESOURCES = 0xA700
STATUS_DATASET_MISMATCH = 0xA900
STATUS_CANNOT_UNDERSTAND = 0xC000

MANDATORY = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")


@dataclass(frozen=True)
class Refusal:
    """A failure status for one C-STORE and why (logged, and sent as its ErrorComment)."""

    status: int
    reason: str

    def response(self) -> Dataset:
        """The C-STORE-RSP status dataset, its comment made a valid LO value."""
        ds = Dataset()
        ds.Status = self.status
        # LO: at most 64 characters, no backslash or control characters
        ds.ErrorComment = re.sub(r"[^ -\[\]-~]", "?", self.reason)[:64]
        return ds


def _is_image_storage(sop_class_uid: str) -> bool:
    return "Image Storage" in UID(sop_class_uid).name


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


def unparsable(exc: Exception) -> Refusal:
    """0xC000 for a dataset that cannot be read, quoting no value from its header."""
    message = _QUOTED.sub("'...'", str(exc))[:200]
    return Refusal(STATUS_CANNOT_UNDERSTAND, f"cannot parse: {type(exc).__name__}: {message}")


def check_received(path: Path, sop_uid: str, sop_class_uid: str
                   ) -> tuple[Dataset, str] | Refusal:
    """Parse the header of ``path`` and check the instance is whole and matches its
    command: the dataset and its Modality, or the refusal."""
    try:
        # Header only: large values (the pixels) stay on disk.  Values are converted
        # lazily, so everything the checks touch is read inside this try.
        ds = dcmread(path, defer_size=1024)
        if len(ds) == 0:  # pydicom gives up quietly on some malformed values
            raise ValueError("no data element could be read")
        problem = mismatch(ds, sop_uid, sop_class_uid)
        modality = str(ds.get("Modality", ""))
    except Exception as exc:  # noqa: BLE001 - any decoding failure is "cannot understand"
        return unparsable(exc)
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
