"""The job's stages as plain functions: prepare, infer, report, deliver.

Celery tasks (``worker.pipeline.tasks``) are thin wrappers around these, so each stage can be
tested, benchmarked and re-run without a broker.  Each stage starts by claiming the job
as this process (``rt.worker_name``) with a guarded update, and returns early when the
job is already past it or held by another live process: that is what makes a
redelivered message harmless.  A stage that has to wait (the next queue, a retry)
releases the job; the reconciler republishes it when it is due.
"""

from __future__ import annotations

import io
import json
import logging
import time
import uuid
from pathlib import Path
from typing import Any

from pydicom import Dataset, dcmread
from sqlalchemy import func, select, update

from dicom_gateway.conversion import ConversionError, convert_file
from dicom_gateway.destinations import SR_COMPREHENSIVE
from dicom_gateway.sender import deliver as send_to
from dicom_gateway.sr import (
    Algorithm,
    DraftReport,
    SRBuildError,
    SRIdentity,
    as_comprehensive_sr,
    build_sr,
)
from models.backend import Backend, BackendError, identity_fields, stored_identity
from models.study import StudyResult, run_studies
from worker import __version__, logs
from worker.runtime import Runtime
from worker.store import jobs
from worker.store.db import BatchRun, Delivery, Instance, Job, now

log = logging.getLogger(__name__)

MANUFACTURER = "CXR Reason Gateway"


def fail(rt: Runtime, job_id: int, version: int, reason: str) -> None:
    """End the job as failed with its reason (if this process holds it, or nobody does)."""
    with rt.db.session() as s:
        if jobs.fail(s, job_id, version, rt.worker_name, reason):
            log.warning("job %d v%d failed: %s", job_id, version, reason)


def prepare(rt: Runtime, job_id: int, version: int) -> bool:
    """Decode and convert the admitted image into the job; False when there is nothing to do.

    The model-ready PNG is stored with the job (a few hundred kB), so any GPU node can run
    it and a lost message costs nothing but a republish.
    """
    me = rt.worker_name
    with rt.db.session() as s:
        if not jobs.claim(s, job_id, version, (jobs.QUEUED,), jobs.PREPARING, me):
            return False
        job = s.get(Job, job_id)
        assert job is not None
        inst = s.scalar(select(Instance).where(Instance.sop_instance_uid == job.sop_instance_uid))
    if inst is None:
        fail(rt, job_id, version, "admitted instance is not recorded")
        return False
    try:
        image = convert_file(Path(inst.path), rt.settings.conversion,
                             rt.settings.max_source_pixels)
    except (ConversionError, OSError) as exc:
        fail(rt, job_id, version, f"conversion failed: {exc}")
        return False
    preview = rt.settings.previews_dir / f"job-{job_id}-v{version}.png"
    preview.parent.mkdir(parents=True, exist_ok=True)
    preview.write_bytes(image.png)  # for people and the dashboard; not part of the promise
    with rt.db.session() as s:
        s.execute(update(Job).where(Job.id == job_id, Job.version == version,
                                    Job.holder == me)
                  .values(conversion="; ".join((image.conversion, *image.notes)),
                          model_input=image.png))
        s.commit()
        return jobs.advance(s, job_id, version, me, (jobs.PREPARING,), jobs.PREPARED,
                            release=True)


def result_payload(backend: Backend, result: StudyResult) -> dict[str, object]:
    """The job's stored result: everything the SR, the API and predictions files read."""
    parsed, report = result.parsed, result.parsed_report
    return {
        **identity_fields(backend.info),
        "prompt": result.prompt,
        "status": result.status,
        "answer_status": parsed.status,
        "labels": list(result.labels),
        "near_misses": parsed.near_misses,
        "unknown_labels": list(parsed.unknown),
        "format_ok": parsed.format_ok,
        "notes": list(parsed.notes),
        "findings_text": result.findings.text,
        "findings_tokens": result.findings.generated_tokens,
        "findings_hit_token_limit": parsed.hit_token_limit,
        "answer": parsed.answer,
        "reasoning": parsed.reasoning,
        "report_text": result.report.text if result.report else "",
        "report_tokens": result.report.generated_tokens if result.report else None,
        "report_truncated": bool(report and report.truncated),
        "report_reasoning": report.reasoning if report else "",
        "report_sections": [{"heading": sec.heading, "known": sec.known,
                             "items": list(sec.items)} for sec in report.sections]
        if report else [],
    }


def claim_for_inference(rt: Runtime, job_id: int, version: int) -> bool:
    """Take one prepared job whose retry (if any) is due (atomic: two never both win)."""
    me = rt.worker_name
    with rt.db.session() as s:
        if not jobs.claim(s, job_id, version, (jobs.PREPARED,), jobs.INFERRING, me,
                          f"worker {me}", Job.next_attempt_at <= now()):
            return False
        s.execute(update(Job).where(Job.id == job_id).values(worker=me))
        s.commit()
        return True


def claim_more(rt: Runtime, limit: int) -> list[tuple[int, int]]:
    """Claim up to ``limit`` other prepared jobs, live traffic before batch, oldest first
    (in one statement: one taken by another worker meanwhile is simply not among them)."""
    if limit <= 0:
        return []
    me = rt.worker_name
    with rt.db.session() as s:
        ready = [(j, v) for j, v in s.execute(select(Job.id, Job.version).where(
            Job.state == jobs.PREPARED, Job.holder == "", Job.next_attempt_at <= now())
            .order_by(Job.priority, Job.created_at).limit(limit)).all()]
        won = set(jobs.claim_each(s, ready, (jobs.PREPARED,), jobs.INFERRING, me,
                                  f"worker {me}", Job.next_attempt_at <= now(), worker=me))
    return [pair for pair in ready if pair in won]


def retry_inference_later(rt: Runtime, batch: list[tuple[int, int]], error: str,
                          permanent: bool) -> None:
    """A backend failure: back to ``prepared`` with a scheduled next attempt, or failed."""
    s_ = rt.settings
    for job_id, version in batch:
        with rt.db.session() as s:
            row = s.get(Job, job_id)
            if row is None:
                continue
            retries = row.retries + 1
            if permanent or retries > s_.inference_max_retries:
                jobs.fail(s, job_id, version, rt.worker_name,
                          f"inference: {error}" if permanent else
                          f"inference failed {retries - 1} times; last: {error}")
                continue
            due = now() + jobs.backoff(retries, s_.retry_backoff_seconds,
                                       s_.retry_max_backoff_seconds)
            s.execute(update(Job).where(Job.id == job_id, Job.holder == rt.worker_name)
                      .values(retries=retries, last_error=error))
            s.commit()
            jobs.requeue(s, job_id, version, (rt.worker_name,), (jobs.INFERRING,),
                         jobs.PREPARED, f"retry {retries} at {jobs.iso(due)}: {error}",
                         count_attempt=False, next_attempt_at=due)
        log.warning("job %d v%d: inference failed (%s)", job_id, version, error)


def infer_batch(rt: Runtime, job_id: int, version: int) -> list[tuple[int, int]]:
    """Run the model on this job plus up to ``gpu_batch_size - 1`` other ready jobs.

    The message only says "there is work": the batch is whatever is ready in the database
    when it arrives (waiting up to ``gpu_batch_wait_seconds`` to fill), so one generation
    serves several studies.  Returns the (job, version) pairs that now have a result.
    """
    settings = rt.settings
    batch: list[tuple[int, int]] = []
    if claim_for_inference(rt, job_id, version):
        batch.append((job_id, version))
    deadline = time.monotonic() + settings.gpu_batch_wait_seconds
    while True:
        batch += claim_more(rt, settings.gpu_batch_size - len(batch))
        if len(batch) >= settings.gpu_batch_size or time.monotonic() >= deadline:
            break
        time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
    runnable = model_inputs(rt, batch)
    if not runnable:
        return []
    try:
        results = run_studies(rt.backend, [image for _, _, image in runnable])
    except BackendError as exc:
        retry_inference_later(rt, [(j, v) for j, v, _ in runnable], str(exc), exc.permanent)
        return []
    batch_id = uuid.uuid4().hex  # so the metrics count batches, not jobs
    done = store_results(rt, [((j, v), result, batch_id, len(runnable)) for (j, v, _), result
                              in zip(runnable, results, strict=True)])
    log.info("%s: batch of %d job(s) inferred", rt.worker_name, len(runnable))
    return done


def model_inputs(rt: Runtime, claimed: list[tuple[int, int]]) -> list[tuple[int, int, bytes]]:
    """The claimed jobs with their stored model input; one without any fails (prepare
    stores it, so its absence is a defect, not something a retry would mend)."""
    if not claimed:
        return []
    with rt.db.session() as s:
        inputs = {row.id: row.model_input for row in s.scalars(
            select(Job).where(Job.id.in_([j for j, _ in claimed]))).all()}
    runnable = []
    for j, v in claimed:
        image = inputs.get(j)
        if image:
            runnable.append((j, v, image))
        else:
            fail(rt, j, v, "no model input stored for the job")
    return runnable


def store_results(rt: Runtime, landed: list[tuple[tuple[int, int], StudyResult, str, int]]
                  ) -> list[tuple[int, int]]:
    """Record each ((job, version), result, batch id, batch size) and let the job wait for
    its report, in one transaction; the jobs stored (not one this process no longer holds:
    taken over meanwhile, the new holder's result counts)."""
    stored = []
    with rt.db.session() as s:
        for (job_id, version), result, batch_id, batch_size in landed:
            payload = result_payload(rt.backend, result)
            payload.update(batch_id=batch_id, batch_size=batch_size, worker=rt.worker_name)
            res = s.execute(update(Job).where(Job.id == job_id, Job.version == version,
                                              Job.state == jobs.INFERRING,
                                              Job.holder == rt.worker_name)
                            .values(result=json.dumps(payload),
                                    holder="", held_since=0.0, last_error=""))
            if res.rowcount == 1:  # type: ignore[attr-defined]
                stored.append((job_id, version))
        s.commit()
    return stored


def model_key(result: dict[str, Any]) -> str:
    """Which model made a stored result (``models.backend.model_key``, as a batch compares it):
    part of every SR UID, so the mock and the real model (or two revisions) never share one."""
    return stored_identity(result).key


def sr_identity(rt: Runtime, job: Job, result: dict[str, Any]) -> SRIdentity:
    return SRIdentity.derive(
        rt.installation_seed, job.study_instance_uid, f"job-{job.id}", job.version,
        model_key(result), MANUFACTURER, f"cxr-reason-gateway {__version__}",
        rt.settings.site_name)


def _notes(result: dict[str, Any]) -> list[str]:
    notes = [str(n) for n in result.get("notes") or []]
    near = result.get("near_misses") or {}
    if near:
        notes.append("Answer items close to a CheXpert label but not one, so not counted "
                     "(as the training parser would not): "
                     + "; ".join(f"{raw!r} (like {label})" for raw, label in
                                 near.items()))
    unknown = result.get("unknown_labels") or []
    if unknown:
        notes.append("Answer items outside the 14 CheXpert labels, not counted: "
                     + "; ".join(repr(u) for u in unknown))
    return notes


def draft_from_result(result: dict[str, Any], conversion: str) -> DraftReport:
    status = str(result["status"])
    labels = tuple(str(x) for x in result.get("labels") or [])
    is_mock = bool(result.get("is_mock"))
    sections = tuple(
        (str(sec["heading"]), tuple(str(i) for i in sec["items"]))
        for sec in result.get("report_sections") or []
    )
    revision = result.get("model_revision") or "unrecorded revision"
    return DraftReport(
        status=status,
        labels=labels,
        reasoning=str(result.get("reasoning") or ""),
        algorithm=Algorithm(
            name=("MOCK " if is_mock else "") + "NV-Reason-CXR-3B",
            version=f"hf:{result['model_id']}@{revision}",
            manufacturer="NVIDIA",
            parameters=(f"backend={result['backend']}", f"prompt={result['prompt']}",
                        f"conversion={conversion}"),
        ),
        is_mock=is_mock,
        answer_text=str(result.get("answer") or "") if result.get("answer") is not None
        else str(result.get("findings_text") or ""),
        report_sections=sections,
        report_text=str(result.get("report_text") or ""),
        report_reasoning=str(result.get("report_reasoning") or ""),
        report_truncated=bool(result.get("report_truncated")),
        notes=tuple(_notes(result)),
    )


def report(rt: Runtime, job_id: int, version: int) -> bool:
    """Build the SR into the outbox; False when there is nothing to do here."""
    me = rt.worker_name
    with rt.db.session() as s:
        if not jobs.claim(s, job_id, version, (jobs.INFERRING, jobs.REPORTING), jobs.REPORTING,
                          me, "", Job.result.is_not(None)):
            return False
        job = s.get(Job, job_id)
        assert job is not None and job.result is not None
        if job.origin == "image":  # a PNG/JPEG from a batch: a result, but nothing to an SR
            return jobs.advance(s, job_id, version, me, (jobs.REPORTING,), jobs.DONE,
                                "image input: result stored, no SR", release=True)
        send = sends_srs(s, job)
    source = Dataset.from_json(job.source_header, bulk_data_uri_handler=lambda *_a: b"")
    result = json.loads(job.result)
    draft = draft_from_result(result, job.conversion)
    identity = sr_identity(rt, job, result)
    try:
        sr = build_sr(source, draft, identity, previous_versions=previous_srs(rt, job))
    except SRBuildError as exc:  # the header's own values may be in it: never show them
        fail(rt, job_id, version, logs.redact(str(exc), logs.patient_values(source)))
        return False
    buf = io.BytesIO()
    sr.save_as(buf, enforce_file_format=True)
    spooled = rt.outbox.write(job.study_instance_uid, identity.sop_instance_uid, [buf.getvalue()])
    with rt.db.session() as s:
        row = s.get(Job, job_id)
        assert row is not None
        row.sr_sop_instance_uid = identity.sop_instance_uid
        row.sr_path = str(spooled.path)
        for dest in rt.settings.destinations if send else ():
            if s.scalar(select(Delivery).where(Delivery.job_id == job_id,
                                               Delivery.destination == str(dest))) is None:
                s.add(Delivery(job_id=job_id, destination=str(dest), updated_at=now()))
        s.commit()
        return jobs.advance(s, job_id, version, me, (jobs.REPORTING,), jobs.DELIVERING,
                            f"SR {identity.sop_instance_uid}")


def sends_srs(s: Any, job: Job) -> bool:
    """Live jobs send their SR to every destination; a batch run's only when it asks."""
    if job.batch_run_id is None:
        return True
    run = s.get(BatchRun, job.batch_run_id)
    return bool(run is not None and run.send_srs)


def previous_srs(rt: Runtime, job: Job) -> list[Dataset]:
    """Earlier versions' SRs for this study, so the new one names what it supersedes."""
    with rt.db.session() as s:
        paths = s.scalars(select(Job.sr_path).where(
            Job.study_instance_uid == job.study_instance_uid, Job.version < job.version,
            Job.sr_path != "").order_by(Job.version)).all()
    return [dcmread(p, stop_before_pixels=True) for p in paths if Path(p).is_file()]


def sender_of(rt: Runtime, job: Job) -> tuple[str, str]:
    """Calling AE title and peer address of the admitted instance (for reply destinations)."""
    with rt.db.session() as s:
        inst = s.scalar(select(Instance).where(Instance.sop_instance_uid == job.sop_instance_uid))
    return (inst.calling_ae, inst.peer) if inst is not None else ("", "")


def _held_for_delivery(rt: Runtime, job_id: int, version: int) -> Job | None:
    """The job, held by this process for delivery (taken if it waits), or None."""
    me = rt.worker_name
    with rt.db.session() as s:
        job = s.get(Job, job_id)
        if job is None or job.version != version or job.state != jobs.DELIVERING:
            return None
        if job.holder != me and not jobs.claim(s, job_id, version, (jobs.DELIVERING,),
                                               jobs.DELIVERING, me, "delivery attempt"):
            return None
        return s.get(Job, job_id)


def deliver(rt: Runtime, job_id: int, version: int) -> bool:
    """Send the SR to every destination whose attempt is due; True when the job is done.

    A transient failure (no association, timeout, 0xA7xx, HTTP 5xx) schedules that
    destination's next attempt in the database (``retry_backoff_seconds``, doubling) and
    releases the job; the reconciler's due-attempt sweep sends it again on any broker.
    A permanent rejection, or too many attempts, fails the job with the reason.
    """
    job = _held_for_delivery(rt, job_id, version)
    if job is None:
        return False
    me, s_ = rt.worker_name, rt.settings
    with rt.db.session() as s:
        pending = s.scalars(select(Delivery).where(Delivery.job_id == job_id,
                                                   Delivery.state != "done")).all()
    due = [d for d in pending if d.next_attempt_at <= now()]
    permanent: list[str] = []
    if due:
        sr = dcmread(Path(job.sr_path))
        variants = {SR_COMPREHENSIVE: as_comprehensive_sr(sr)}
        sender = sender_of(rt, job)
        by_name = {str(d): d for d in s_.destinations}
        for row in due:
            dest = by_name.get(row.destination)
            if dest is None:
                permanent.append(f"{row.destination}: no longer configured")
                continue
            dest = dest.resolved(*sender)
            outcome = send_to([variants.get(dest.sr_class, sr)], dest, s_.ae_title)
            with rt.db.session() as s:
                d = s.get(Delivery, row.id)
                assert d is not None
                d.attempts += 1
                d.updated_at = now()
                d.detail = outcome.detail
                if outcome.ok:
                    d.state, d.next_attempt_at = "done", 0.0
                    log.info("job %d v%d: SR %s delivered to %s", job_id, version,
                             job.sr_sop_instance_uid, row.destination)
                elif outcome.permanent or d.attempts >= s_.delivery_max_attempts:
                    d.state, d.next_attempt_at = "failed", 0.0
                    permanent.append(f"{row.destination}: {outcome.detail}" + (
                        "" if outcome.permanent else f" ({d.attempts} attempts)"))
                else:
                    d.state = "retrying"
                    d.next_attempt_at = now() + jobs.backoff(
                        d.attempts, s_.retry_backoff_seconds, s_.retry_max_backoff_seconds)
                    log.warning("job %d v%d: delivery to %s failed (%s); attempt %d at %s",
                                job_id, version, row.destination, outcome.detail,
                                d.attempts + 1, jobs.iso(d.next_attempt_at))
                s.commit()
    if permanent:
        fail(rt, job_id, version, "delivery failed: " + "; ".join(permanent))
        return False
    with rt.db.session() as s:
        waiting = s.scalars(select(Delivery).where(Delivery.job_id == job_id,
                                                   Delivery.state != "done")).all()
        if waiting:
            next_at = min(d.next_attempt_at for d in waiting)
            errors = "; ".join(f"{d.destination}: {d.detail}" for d in waiting if d.detail)
            jobs.release(s, job_id, version, me, next_attempt_at=max(next_at, now()),
                         last_error=errors)
            return False
        sent = s.scalar(select(func.count()).select_from(Delivery).where(
            Delivery.job_id == job_id)) or 0
        return jobs.advance(s, job_id, version, me, (jobs.DELIVERING,), jobs.DONE,
                            f"{sent} destination(s)" if sent else "no destination: SR kept "
                            "in the outbox", release=True)
