"""The addendum stage (``cxr.addendum``, cpu queue): a follow-up thread as an addendum SR.

Asked for with a question (``--to-pacs``, the HTTP flag, the dashboard button), once it
is answered: the answered questions of the job up to it become one SR
(``dicom_gateway.documents.addendum``) referencing the job's first SR and the image,
written to the outbox and sent to the same destinations the first SR went to (the job's
rule's, else the default list; a batch job's only if its run sends SRs).

Delivery is the first SR's: one ``deliveries`` row per destination (document
``addendum:<question id>``), one attempt per due row and message, a transient failure
scheduled in the database with the same backoff, a permanent one (or too many attempts)
failing that row (``worker.store.deliveries``).  Nothing sleeps here, so a destination
that is down holds no worker; each row is claimed before it is sent, so a redelivered
message never sends it twice; the reconciler publishes the task again when a row is due.
The question's ``addendum`` state (wanted, sending, written, failed) follows its rows.
"""

from __future__ import annotations

import io
import json
import logging

from pydicom import Dataset, dcmread
from sqlalchemy import func, select

from dicom_gateway.documents.addendum import AddendumContent, build_addendum, thread_items
from dicom_gateway.documents.draft import Algorithm
from dicom_gateway.documents.sr import SRBuildError, as_comprehensive_sr
from dicom_gateway.transfer.destinations import SR_COMPREHENSIVE
from dicom_gateway.transfer.sender import deliver as send_to
from worker import __version__, logs
from worker.pipeline import claims, reporting
from worker.pipeline.delivery import record_attempt, sender_of
from worker.runtime import Runtime
from worker.store import deliveries
from worker.store import questions as qs
from worker.store.db import Delivery, Job, Question
from worker.store.jobs import iso

log = logging.getLogger(__name__)
WANTED, SENDING, WRITTEN, FAILED = "wanted", "sending", "written", "failed"


def _record(rt: Runtime, question_id: int, **values: object) -> None:
    with rt.db.session() as s:
        q = s.get(Question, question_id)
        if q is not None:
            for key, value in values.items():
                setattr(q, key, value)
            s.commit()


def write_and_send(rt: Runtime, question_id: int) -> str:
    """File the addendum if it is wanted, then send its due rows; its state after."""
    with rt.db.session() as s:
        q = s.get(Question, question_id)
        if q is None:
            return ""
        state = q.addendum
    if state == WANTED:
        state = file_addendum(rt, question_id)
    if state == SENDING:
        state = send_due(rt, question_id)
    return state


def _content(rt: Runtime, job: Job, thread: list[dict[str, str]]) -> AddendumContent:
    result = json.loads(job.result or "{}")
    revision = result.get("model_revision") or "unrecorded revision"
    return AddendumContent(
        items=thread_items(thread),
        algorithm=Algorithm(("MOCK " if result.get("is_mock") else "") + "NV-Reason-CXR-3B",
                            f"hf:{result.get('model_id')}@{revision}", "NVIDIA"),
        is_mock=bool(result.get("is_mock")),
        software_version=f"cxr-reason-gateway {__version__}", site_name=rt.settings.site_name)


def file_addendum(rt: Runtime, question_id: int) -> str:
    """Build the addendum (the same UIDs and bytes however often), write it to the
    outbox, plan one delivery row per SR destination; the question's state after."""
    with rt.db.session() as s:
        q = s.get(Question, question_id)
        job = s.get(Job, q.job_id) if q is not None else None
        if q is None or job is None or q.state != qs.ANSWERED or q.addendum != WANTED:
            return q.addendum if q is not None else ""
        if not job.sr_path or not job.sr_sop_instance_uid:
            _record(rt, question_id, addendum=FAILED, addendum_detail=(
                "the job has no first SR to add to (an image input, or not reported yet)"))
            return FAILED
        thread = [qs.question_view(r) for r in s.scalars(
            select(Question).where(Question.job_id == job.id, Question.id <= question_id,
                                   Question.state == qs.ANSWERED)
            .order_by(Question.asked_at, Question.id))]
        # numbered in the order they were asked for: the job's addenda up to this one
        ordinal = s.scalar(select(func.count()).select_from(Question).where(
            Question.job_id == job.id, Question.id <= question_id, Question.addendum != ""))
        send = claims.sends_srs(s, job)
    source = Dataset.from_json(job.source_header, bulk_data_uri_handler=lambda *_a: b"")
    first = dcmread(job.sr_path, stop_before_pixels=True)
    try:
        sr = build_addendum(source, first, _content(rt, job, thread), f"question-{question_id}",
                            ordinal=max(1, ordinal or 1))
    except SRBuildError as exc:
        _record(rt, question_id, addendum=FAILED,
                addendum_detail=logs.redact(str(exc), logs.patient_values(source)))
        return FAILED
    buf = io.BytesIO()
    sr.save_as(buf, enforce_file_format=True)
    path = rt.outbox.write(job.study_instance_uid, str(sr.SOPInstanceUID),
                           [buf.getvalue()]).path
    document = deliveries.addendum_document(question_id)
    targets = [str(d) for d in reporting.job_destinations(rt, job) if d.wants_sr] if send else []
    with rt.db.session() as s:
        deliveries.plan(s, job.id, document, targets)
        deliveries.reopen(s, job.id, document)  # asked again after a failure
        q = s.get(Question, question_id)
        assert q is not None
        q.addendum_sop_instance_uid, q.addendum_path = str(sr.SOPInstanceUID), str(path)
        q.addendum = SENDING if targets else WRITTEN
        q.addendum_detail = "" if targets else "no destination: kept in the outbox"
        s.commit()
    log.info("question %d: addendum SR %s filed for %d destination(s)", question_id,
             sr.SOPInstanceUID, len(targets))
    return SENDING if targets else WRITTEN


def send_due(rt: Runtime, question_id: int) -> str:
    """One attempt to each due row this process can claim; the question's state after."""
    document = deliveries.addendum_document(question_id)
    with rt.db.session() as s:
        q = s.get(Question, question_id)
        job = s.get(Job, q.job_id) if q is not None else None
        if q is None or job is None:
            return ""
        due = [d.id for d in deliveries.not_done(s, job.id, document)]
    sr: Dataset | None = None
    for delivery_id in due:
        if not deliveries.claim(rt.db, delivery_id, rt.worker_name):
            continue  # another copy of this message has it, or it is not due yet
        try:
            sr = sr if sr is not None else dcmread(q.addendum_path)
            _send_one(rt, job, delivery_id, sr)
        except Exception as exc:  # noqa: BLE001 - whatever failed, the claim is released
            deliveries.release(rt.db, delivery_id, rt.worker_name,
                               f"not sent: {type(exc).__name__}", rt.settings)
            log.warning("question %d: addendum delivery %d not sent (%s); scheduled again",
                        question_id, delivery_id, type(exc).__name__)
    return summarise(rt, question_id, job.id)


def _send_one(rt: Runtime, job: Job, delivery_id: int, sr: Dataset) -> None:
    with rt.db.session() as s:
        row = s.get(Delivery, delivery_id)
        assert row is not None
        name = row.destination
    dest = rt.settings.destinations_by_name(job.destinations).get(name)
    if dest is None:
        deliveries.record(rt.db, delivery_id, deliveries.Attempt(
            False, True, "no longer configured"), rt.settings, holder=rt.worker_name)
        return
    dest = dest.resolved(*sender_of(rt, job))
    ds = as_comprehensive_sr(sr) if dest.sr_class == SR_COMPREHENSIVE else sr
    record_attempt(rt, delivery_id, send_to([ds], dest, rt.settings.ae_title),
                   holder=rt.worker_name)


def summarise(rt: Runtime, question_id: int, job_id: int) -> str:
    """The question's addendum state from its rows: written when every row is done,
    failed when one failed for good, sending while any waits for its next attempt."""
    document = deliveries.addendum_document(question_id)
    with rt.db.session() as s:
        rows = deliveries.rows(s, job_id, document)
        q = s.get(Question, question_id)
        if q is None or q.addendum not in (SENDING, WRITTEN, FAILED):
            return q.addendum if q is not None else ""
        failed = [d for d in rows if d.state == deliveries.FAILED]
        waiting = [d for d in rows if d.state in deliveries.OPEN]
        if failed and not waiting:
            q.addendum = FAILED
        elif not waiting:
            q.addendum = WRITTEN
        q.addendum_detail = "; ".join(
            f"ok {d.destination}" if d.state == deliveries.DONE else
            f"{d.destination}: {d.detail or 'waiting'}"
            + (f" (next attempt {iso(d.next_attempt_at)})"
               if d.state == deliveries.RETRYING else "") for d in rows) or q.addendum_detail
        state = q.addendum
        s.commit()
    if state != SENDING:
        log.info("question %d: addendum SR %s (%s)", question_id, state, q.addendum_detail)
    return state
