"""Small synthetic chest radiographs and raw DIMSE sends for ingest tests."""

from __future__ import annotations

import io
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE
from pynetdicom.dimse_primitives import C_STORE

CR = "1.2.840.10008.5.1.4.1.1.1"


def make_cr(study_uid: str | None = None, view: str = "PA", size: int = 64, bits: int = 12,
            number: int = 1, seed: int = 0) -> Dataset:
    """A tiny CR chest image with valid UIDs, in Explicit VR Little Endian."""
    rng = np.random.default_rng(seed)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = CR
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPClassUID = CR
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientName, ds.PatientID = "Test^Synthetic", "SYN001"
    ds.Modality, ds.BodyPartExamined, ds.ViewPosition = "CR", "CHEST", view
    ds.InstanceNumber = number
    ds.Rows = ds.Columns = size
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated = 8 if bits == 8 else 16
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits - 1, 0
    dtype = np.uint8 if bits == 8 else np.uint16
    ds.PixelData = rng.integers(0, 2**bits, size=(size, size)).astype(dtype).tobytes()
    return ds


def save(ds: Dataset, path: Path) -> Path:
    ds.save_as(path, enforce_file_format=True)
    return path


def dcmtk_convert(tool: str, args: list[str], src: Path, dst: Path) -> Path:
    subprocess.run([tool, *args, str(src), str(dst)], check=True, capture_output=True)
    return dst


def encode_dataset(ds: Dataset) -> bytes:
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_dataset(fp, ds)
    return bytes(fp.getvalue())


def raw_c_store(port: int, command_sop_instance: str, data: bytes,
                sop_class: str = CR, called: str = "CXRGATEWAY",
                transfer_syntax: str = ExplicitVRLittleEndian) -> int | None:
    """Send ``data`` as the dataset of a C-STORE whose command names ``command_sop_instance``.

    dcmtk's storescu takes the command's UIDs from the dataset and refuses to send what
    it cannot parse, so mismatched or malformed datasets need this lower-level sender.
    Returns the response status, or None when the peer answered nothing (it aborted).
    """
    rsp = raw_c_store_response(port, command_sop_instance, data, sop_class, called,
                               transfer_syntax)
    return None if rsp is None else int(rsp.Status)


def raw_c_store_response(port: int, command_sop_instance: str, data: bytes,
                         sop_class: str = CR, called: str = "CXRGATEWAY",
                         transfer_syntax: str = ExplicitVRLittleEndian) -> Any:
    """As :func:`raw_c_store`, returning the whole C-STORE-RSP (None if none came)."""
    ae = AE(ae_title="RAWSCU")
    ae.add_requested_context(sop_class, transfer_syntax)
    assoc = ae.associate("127.0.0.1", port, ae_title=called)
    assert assoc.is_established
    req = C_STORE()
    req.MessageID, req.Priority = 1, 2
    req.AffectedSOPClassUID, req.AffectedSOPInstanceUID = sop_class, command_sop_instance
    req.DataSet = io.BytesIO(data)
    # pause the association's reactor as pynetdicom's own send_c_store does
    assoc._reactor_checkpoint.clear()
    while not assoc._is_paused:
        time.sleep(0.0001)
    assoc.dimse.send_msg(req, assoc.accepted_contexts[0].context_id)
    _, rsp = assoc.dimse.get_msg(block=True)
    assoc._reactor_checkpoint.set()
    if assoc.is_established:
        assoc.release()
    return rsp
