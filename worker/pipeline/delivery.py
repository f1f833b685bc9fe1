"""The delivery stage: send the job's SR (and, where a destination asks, its rendered
report pages) to every destination whose attempt is due.

A transient failure (no association, timeout, 0xA7xx, HTTP 5xx) schedules that
destination's next attempt in the database and releases the job; the reconciler's
due-attempt sweep sends it again on any broker.  A permanent rejection, or too many
attempts, fails the job with the reason.  The job's claims and transitions are
``worker.pipeline.claims``'; each row's bookkeeping and the retry rule are
``worker.store.deliveries``' (which addenda share, ``worker.pipeline.addenda``).
"""

from __future__ import annotations

import logging
from pathlib import Path

from pydicom import Dataset, dcmread
from sqlalchemy import select

from dicom_gateway.documents.pdf import ENCAPSULATED_PDF
from dicom_gateway.documents.sr import as_comprehensive_sr
from dicom_gateway.transfer.destinations import SR_COMPREHENSIVE
from dicom_gateway.transfer.sender import SendOutcome
from dicom_gateway.transfer.sender import deliver as send_to
from worker.pipeline import claims
from worker.runtime import Runtime
from worker.store import deliveries
from worker.store.db import Delivery, Instance, Job, now

log = logging.getLogger(__name__)


def deliver(rt: Runtime, job_id: int, version: int) -> bool:
    """Send the SR to every destination whose attempt is due; True when the job is done."""
    job = claims.held_for_delivery(rt, job_id, version)
    if job is None:
        return False
    due = [d for d in claims.pending_deliveries(rt, job_id) if d.next_attempt_at <= now()]
    refused = send_due(rt, job, due) if due else []
    if refused:
        claims.fail(rt, job_id, version, "delivery failed: " + "; ".join(refused))
        return False
    return claims.finish_delivery(rt, job_id, version)


def send_due(rt: Runtime, job: Job, due: list[Delivery]) -> list[str]:
    """One attempt to each due destination; why each destination that will never take
    the SR does not ("name: detail")."""
    sr = dcmread(Path(job.sr_path))
    variants: dict[str, Dataset] = {SR_COMPREHENSIVE: as_comprehensive_sr(sr)}
    rendered = [dcmread(Path(p)) for p in job.page_paths.splitlines() if p.strip()]
    pdfs = [d for d in rendered if d.SOPClassUID == ENCAPSULATED_PDF]
    pages = [d for d in rendered if d.SOPClassUID != ENCAPSULATED_PDF]
    sender = sender_of(rt, job)
    by_name = rt.settings.destinations_by_name(job.destinations)
    refused: list[str] = []
    for row in due:
        dest = by_name.get(row.destination)
        if dest is None:
            refused.append(f"{row.destination}: no longer configured")
            continue
        dest = dest.resolved(*sender)
        if (dest.wants_page and not pages) or (dest.wants_pdf and not pdfs):
            # reported before this destination asked for them
            outcome = SendOutcome(str(dest), ok=False, permanent=True, detail=(
                "no rendered report page (or PDF) was built for this job version (its "
                "destinations did not ask for one when it was reported); retry the job"))
        else:
            datasets = ([variants.get(dest.sr_class, sr)] if dest.wants_sr else []) + \
                (pages if dest.wants_page else []) + (pdfs if dest.wants_pdf else [])
            outcome = send_to(datasets, dest, rt.settings.ae_title)
        why = record_attempt(rt, row.id, outcome)
        if why is not None:
            refused.append(why)
    return refused


def record_attempt(rt: Runtime, delivery_id: int, outcome: SendOutcome,
                   holder: str = "") -> str | None:
    """Note one attempt on its row (``worker.store.deliveries``: the retry rule's owner);
    ``holder``: the claim it was sent under, for a row claimed on its own (an addendum's)."""
    return deliveries.record(rt.db, delivery_id, deliveries.Attempt(
        outcome.ok, outcome.permanent, outcome.detail), rt.settings, holder=holder)


def sender_of(rt: Runtime, job: Job) -> tuple[str, str]:
    """Calling AE title and peer address of the admitted instance (for reply destinations)."""
    with rt.db.session() as s:
        inst = s.scalar(select(Instance).where(Instance.sop_instance_uid == job.sop_instance_uid))
    return (inst.calling_ae, inst.peer) if inst is not None else ("", "")
