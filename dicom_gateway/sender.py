"""Sending SRs: C-STORE SCU (one association per result set) and DICOMweb STOW-RS.

The outcome separates what a retry can fix (no association, timeouts, 0xA7xx
out-of-resources) from what it cannot (0xA9xx, 0xCxxx: the peer will reject the same
object again), so the caller never loops on a permanent reject.
"""

from __future__ import annotations

import io
import urllib.error
import urllib.request
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from pydicom import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE

from dicom_gateway.destinations import Destination


@dataclass(frozen=True)
class SendOutcome:
    destination: str
    ok: bool
    permanent: bool
    detail: str
    status: int | None = None


PERMANENT_GENERAL = {0x0122, 0x0124}  # SOP class not supported, not authorised


def _is_permanent(status: int) -> bool:
    """0xA9xx and 0xCxxx (PS3.4 B.2.3) and refusals a resend cannot change."""
    return (status & 0xFF00) == 0xA900 or (status & 0xF000) == 0xC000 or \
        status in PERMANENT_GENERAL


def send_datasets(
    datasets: Sequence[Dataset], dest: Destination, calling_ae: str,
    timeout: float = 30.0,
) -> SendOutcome:
    """C-STORE every dataset over one association; stop at the first failure."""
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    for sop_class in sorted({str(ds.SOPClassUID) for ds in datasets}):
        ae.add_requested_context(sop_class, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    assoc = ae.associate(dest.host, dest.port, ae_title=dest.ae_title)
    if not assoc.is_established:
        what = "rejected" if assoc.is_rejected else "aborted" if assoc.is_aborted else "failed"
        # An association reject for a wrong AE title is configuration: permanent.
        return SendOutcome(str(dest), False, assoc.is_rejected, f"association {what}")
    try:
        for ds in datasets:
            try:
                status = assoc.send_c_store(ds)
            except ValueError as exc:  # the peer accepted no presentation context for it
                return SendOutcome(str(dest), False, True, f"not accepted by the peer: {exc}")
            if not status or "Status" not in status:
                return SendOutcome(str(dest), False, False, "no C-STORE response (timeout)")
            code = int(status.Status)
            if code not in (0x0000, 0xB000, 0xB006, 0xB007):
                return SendOutcome(str(dest), False, _is_permanent(code),
                                   f"C-STORE status 0x{code:04X}", code)
        return SendOutcome(str(dest), True, False, "stored", 0)
    finally:
        if assoc.is_established:
            assoc.release()


def _part10(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def stow_rs(datasets: Sequence[Dataset], dest: Destination, timeout: float = 30.0
            ) -> SendOutcome:
    """STOW-RS (PS3.18 10.5): one multipart/related POST to ``{root}/studies``."""
    boundary = uuid.uuid4().hex
    body = b"".join(
        f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + _part10(ds)
        + b"\r\n" for ds in datasets
    ) + f"--{boundary}--\r\n".encode()
    req = urllib.request.Request(
        f"{dest.url}/studies", data=body, method="POST",
        headers={"Content-Type": f'multipart/related; type="application/dicom"; '
                                 f"boundary={boundary}",
                 "Accept": "application/dicom+json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return SendOutcome(str(dest), True, False, f"HTTP {resp.status}", resp.status)
    except urllib.error.HTTPError as exc:
        permanent = 400 <= exc.code < 500 and exc.code not in (408, 429)
        return SendOutcome(str(dest), False, permanent, f"HTTP {exc.code}", exc.code)
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        return SendOutcome(str(dest), False, False, f"STOW-RS failed: {exc}")


def deliver(datasets: Sequence[Dataset], dest: Destination, calling_ae: str) -> SendOutcome:
    """Send to one destination, by its kind."""
    if dest.kind == "stow":
        return stow_rs(datasets, dest)
    return send_datasets(datasets, dest, calling_ae)
