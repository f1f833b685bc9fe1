"""Sending SRs: C-STORE SCU (one association per result set) and DICOMweb STOW-RS.

The outcome separates what a retry can fix (no association, an abort, timeouts, an
A-ASSOCIATE-RJ *rejected-transient* such as a busy peer's "local limit exceeded",
0xA7xx out-of-resources, HTTP 5xx/429) from what it cannot (A-ASSOCIATE-RJ
*rejected-permanent* such as an unknown AE title, 0xA9xx, 0xCxxx, most HTTP 4xx: the
peer will refuse the same object again), so the caller never loops on a permanent
reject and never gives up on a peer that is only busy.

STOW-RS keeps a hand-written multipart/related body (PS3.18 10.5): ``dicomweb-client``'s
``store_instances`` builds the whole body in memory, while the body here is a generator
that encodes one instance at a time as it is sent (chunked transfer encoding).
"""

from __future__ import annotations

import io
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from pydicom import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE

from dicom_gateway.transfer.destinations import Destination
from models.http_status import describe_http_status, is_permanent_http_status


@dataclass(frozen=True)
class SendOutcome:
    destination: str
    ok: bool
    permanent: bool
    detail: str
    status: int | None = None


PERMANENT_GENERAL = {0x0122, 0x0124}  # SOP class not supported, not authorised

# PS3.8 9.3.4 (A-ASSOCIATE-RJ PDU): result, source, and the reason by source.
REJECT_RESULTS = {1: "rejected-permanent", 2: "rejected-transient"}
REJECT_SOURCES = {1: "service-user", 2: "service-provider (ACSE)",
                  3: "service-provider (presentation)"}
REJECT_REASONS = {
    (1, 1): "no reason given", (1, 2): "application context name not supported",
    (1, 3): "calling AE title not recognised", (1, 7): "called AE title not recognised",
    (2, 1): "no reason given", (2, 2): "protocol version not supported",
    (3, 1): "temporary congestion", (3, 2): "local limit exceeded",
}


def _is_permanent(status: int) -> bool:
    """0xA9xx and 0xCxxx (PS3.4 B.2.3) and refusals a resend cannot change."""
    return (status & 0xFF00) == 0xA900 or (status & 0xF000) == 0xC000 or \
        status in PERMANENT_GENERAL


@dataclass(frozen=True)
class AssociationReject:
    """The peer's A-ASSOCIATE-RJ: only *rejected-transient* (2) invites a retry."""

    result: int
    source: int
    reason: int

    @property
    def permanent(self) -> bool:
        """Result 1 is permanent by definition; an unknown result is not trusted to clear."""
        return self.result != 2

    def __str__(self) -> str:
        result = REJECT_RESULTS.get(self.result, f"rejected (result {self.result})")
        source = REJECT_SOURCES.get(self.source, f"source {self.source}")
        reason = REJECT_REASONS.get((self.source, self.reason), f"reason {self.reason}")
        return f"association {result} by {source}: {reason}"


def association_reject(assoc: Any) -> AssociationReject | None:
    """The reject a failed association received, or None when it was not rejected.

    pynetdicom keeps the A-ASSOCIATE primitive that answered the request (the rejection
    included) as ``assoc.acceptor.primitive``, with ``result``, ``result_source`` and
    ``diagnostic`` as the PDU carried them.
    """
    primitive = getattr(getattr(assoc, "acceptor", None), "primitive", None)
    if not assoc.is_rejected or primitive is None:
        return None
    return AssociationReject(int(primitive.result or 0), int(primitive.result_source or 0),
                             int(primitive.diagnostic or 0))


def _not_established(assoc: Any, dest: Destination) -> SendOutcome:
    """Why no association: a reject decides by its result; an abort or no answer is
    transient (the peer may be restarting or unreachable for now)."""
    reject = association_reject(assoc)
    if reject is not None:
        return SendOutcome(str(dest), False, reject.permanent, str(reject))
    what = "rejected" if assoc.is_rejected else "aborted" if assoc.is_aborted else "failed"
    return SendOutcome(str(dest), False, False, f"association {what}")


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
        return _not_established(assoc, dest)
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


def stow_body(datasets: Sequence[Dataset], boundary: str) -> Iterator[bytes]:
    """The multipart/related body, one instance encoded at a time as it is sent, so a
    large result set is never held in memory whole (RFC 2046: CRLF before every
    delimiter, the close delimiter last)."""
    for ds in datasets:
        yield f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        yield _part10(ds)
        yield b"\r\n"
    yield f"--{boundary}--\r\n".encode()


def stow_rs(datasets: Sequence[Dataset], dest: Destination, timeout: float = 30.0
            ) -> SendOutcome:
    """STOW-RS (PS3.18 10.5): one multipart/related POST to ``{root}/studies``.

    The body is an iterator, so urllib sends it with chunked transfer encoding; the
    permanence of an HTTP error follows the gateway's one rule (models.http_status).
    """
    boundary = uuid.uuid4().hex
    req = urllib.request.Request(
        f"{dest.url}/studies", data=stow_body(datasets, boundary), method="POST",
        headers={"Content-Type": f'multipart/related; type="application/dicom"; '
                                 f"boundary={boundary}",
                 "Accept": "application/dicom+json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return SendOutcome(str(dest), True, False, describe_http_status(resp.status),
                               resp.status)
    except urllib.error.HTTPError as exc:
        return SendOutcome(str(dest), False, is_permanent_http_status(exc.code),
                           f"STOW-RS: {describe_http_status(exc.code)}", exc.code)
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        return SendOutcome(str(dest), False, False, f"STOW-RS failed: {exc}")


def deliver(datasets: Sequence[Dataset], dest: Destination, calling_ae: str) -> SendOutcome:
    """Send to one destination, by its kind."""
    if dest.kind == "stow":
        return stow_rs(datasets, dest)
    return send_datasets(datasets, dest, calling_ae)
