"""Sending SRs: C-STORE SCU, one association per result set.

The outcome separates what a retry can fix (no association, timeouts, 0xA7xx
out-of-resources) from what it cannot (0xA9xx, 0xCxxx: the peer will reject the same
object again), so the caller never loops on a permanent reject.
"""

from __future__ import annotations

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


def _is_permanent(status: int) -> bool:
    return (status & 0xFF00) in (0xA900, 0xC000) or (status & 0xF000) == 0xC000


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
            status = assoc.send_c_store(ds)
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
