"""The addendum stage (``cxr.addendum``, cpu queue): a follow-up thread as an addendum SR.

Asked for with a question (``--to-pacs``, the HTTP flag, the dashboard button), once it
is answered: the answered questions of the job up to it become one SR
(``dicom_gateway.documents.addendum``) referencing the job's first SR and the image, written
to the outbox and sent to the same destinations the first SR went to (the job's rule's,
else the default list; a batch job's only if its run sends SRs), through the same sender
and the same permanent/transient rule.  A transient failure is tried again within the
task, up to three attempts with the delivery backoff; what happened to each destination
is recorded on the question (``addendum_detail``), and asking again retries.
"""

from __future__ import annotations

import io
import json
import logging
import time

from pydicom import Dataset, dcmread
from sqlalchemy import select

from dicom_gateway.documents.addendum import AddendumContent, build_addendum, thread_items
from dicom_gateway.documents.sr import SRBuildError, as_comprehensive_sr
from dicom_gateway.transfer.destinations import SR_COMPREHENSIVE
from dicom_gateway.transfer.sender import deliver as send_to
from worker import __version__, logs
from worker.pipeline import claims, reporting
from worker.pipeline.delivery import sender_of
from worker.runtime import Runtime
from worker.store import conversations as conv
from worker.store import jobs
from worker.store.db import Job, Question

log = logging.getLogger(__name__)
ATTEMPTS = 3


def _record(rt: Runtime, question_id: int, **values: object) -> None:
    with rt.db.session() as s:
        q = s.get(Question, question_id)
        if q is not None:
            for key, value in values.items():
                setattr(q, key, value)
            s.commit()


def write_and_send(rt: Runtime, question_id: int) -> str:
    """Build, file and deliver the addendum for a question; its state (written|failed)."""
    with rt.db.session() as s:
        q = s.get(Question, question_id)
        job = s.get(Job, q.job_id) if q is not None else None
        if q is None or job is None or q.state != conv.ANSWERED or q.addendum != "wanted":
            return q.addendum if q is not None else ""
        if not job.sr_path or not job.sr_sop_instance_uid:
            _record(rt, question_id, addendum="failed", addendum_detail=(
                "the job has no first SR to add to (an image input, or not reported yet)"))
            return "failed"
        thread = [conv.question_view(r) for r in s.scalars(
            select(Question).where(Question.job_id == job.id, Question.id <= question_id,
                                   Question.state == conv.ANSWERED)
            .order_by(Question.asked_at, Question.id))]
        send = claims.sends_srs(s, job)
    result = json.loads(job.result or "{}")
    source = Dataset.from_json(job.source_header, bulk_data_uri_handler=lambda *_a: b"")
    first = dcmread(job.sr_path, stop_before_pixels=True)
    revision = result.get("model_revision") or "unrecorded revision"
    content = AddendumContent(
        items=thread_items(thread),
        algorithm_name=("MOCK " if result.get("is_mock") else "") + "NV-Reason-CXR-3B",
        algorithm_version=f"hf:{result.get('model_id')}@{revision}",
        is_mock=bool(result.get("is_mock")),
        software_version=f"cxr-reason-gateway {__version__}", site_name=rt.settings.site_name)
    try:
        sr = build_addendum(source, first, content, f"question-{question_id}")
    except SRBuildError as exc:
        _record(rt, question_id, addendum="failed",
                addendum_detail=logs.redact(str(exc), logs.patient_values(source)))
        return "failed"
    buf = io.BytesIO()
    sr.save_as(buf, enforce_file_format=True)
    path = rt.outbox.write(job.study_instance_uid, str(sr.SOPInstanceUID),
                           [buf.getvalue()]).path
    _record(rt, question_id, addendum_sop_instance_uid=str(sr.SOPInstanceUID),
            addendum_path=str(path))
    details = deliver(rt, job, sr) if send else []
    failed = [d for d in details if not d.startswith("ok ")]
    state = "failed" if failed else "written"
    detail = "; ".join(details) if details else "no destination: kept in the outbox"
    _record(rt, question_id, addendum=state, addendum_detail=detail)
    log.info("question %d: addendum SR %s %s (%s)", question_id, sr.SOPInstanceUID, state,
             detail)
    return state


def deliver(rt: Runtime, job: Job, sr: Dataset) -> list[str]:
    """Send to each of the job's SR destinations (a few attempts each); one line each."""
    sender = sender_of(rt, job)
    out = []
    for dest in reporting.job_destinations(rt, job):
        if not dest.wants_sr:
            continue
        dest = dest.resolved(*sender)
        ds = as_comprehensive_sr(sr) if dest.sr_class == SR_COMPREHENSIVE else sr
        outcome = None
        for attempt in range(1, ATTEMPTS + 1):
            outcome = send_to([ds], dest, rt.settings.ae_title)
            if outcome.ok or outcome.permanent or attempt == ATTEMPTS:
                break
            time.sleep(min(jobs.backoff(attempt, rt.settings.retry_backoff_seconds,
                                        rt.settings.retry_max_backoff_seconds), 30.0))
        assert outcome is not None
        out.append(f"ok {dest}" if outcome.ok else f"{dest}: {outcome.detail}")
    return out
