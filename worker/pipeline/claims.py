"""The pipeline's claims and state changes: every database write a stage makes to its job.

A stage (``worker.pipeline.stages``) starts by claiming its job as this process
(``rt.worker_name``) with a guarded update and gets nothing back when the job is already
past it or held by another live process: that is what makes a redelivered message
harmless.  Each function here is one short transaction through ``worker.store.jobs``;
the stage modules do the I/O (conversion, the model, the SR, the network) in between.
Kept apart so that the rules a reader must trust (who may change a job, and from which
state) can be read in one place, without the I/O around them.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from dicom_gateway.transfer.destinations import Destination, parse_destinations
from worker.runtime import Runtime
from worker.store import deliveries, jobs
from worker.store.db import BatchRun, Delivery, Instance, Job, now

log = logging.getLogger(__name__)

Pair = tuple[int, int]  # (job id, version)


def fail(rt: Runtime, job_id: int, version: int, reason: str) -> None:
    """End the job as failed with its reason (if this process holds it, or nobody does)."""
    with rt.db.session() as s:
        if jobs.fail(s, job_id, version, rt.worker_name, reason):
            log.warning("job %d v%d failed: %s", job_id, version, reason)


# -- prepare --------------------------------------------------------------------------

def claim_for_prepare(rt: Runtime, job_id: int, version: int) -> Path | None:
    """Take a queued job for preparing; the spool path of its admitted instance, or None
    when there is nothing to do here (the job failed if its instance is not recorded)."""
    with rt.db.session() as s:
        if not jobs.claim(s, job_id, version, (jobs.QUEUED,), jobs.PREPARING, rt.worker_name):
            return None
        job = s.get(Job, job_id)
        assert job is not None
        inst = s.scalar(select(Instance).where(Instance.sop_instance_uid == job.sop_instance_uid))
    if inst is None:
        fail(rt, job_id, version, "admitted instance is not recorded")
        return None
    return Path(inst.path)


def store_model_input(rt: Runtime, job_id: int, version: int, conversion: str,
                      png: bytes) -> bool:
    """Keep the model-ready image with the job and let it wait for a GPU worker."""
    holder = rt.worker_name
    with rt.db.session() as s:
        s.execute(update(Job).where(Job.id == job_id, Job.version == version,
                                    Job.holder == holder)
                  .values(conversion=conversion, model_input=png))
        s.commit()
        return jobs.advance(s, job_id, version, holder, (jobs.PREPARING,), jobs.PREPARED,
                            release=True)


# -- infer ----------------------------------------------------------------------------

def claim_for_inference(rt: Runtime, job_id: int, version: int) -> bool:
    """Take one prepared job whose retry (if any) is due (atomic: two never both win)."""
    holder = rt.worker_name
    with rt.db.session() as s:
        if not jobs.claim(s, job_id, version, (jobs.PREPARED,), jobs.INFERRING, holder,
                          f"worker {holder}", Job.next_attempt_at <= now()):
            return False
        s.execute(update(Job).where(Job.id == job_id).values(worker=holder))
        s.commit()
        return True


def claim_more(rt: Runtime, limit: int, below_priority: int | None = None) -> list[Pair]:
    """Claim up to ``limit`` other prepared jobs, live traffic before batch, oldest first
    (in one statement: one taken by another worker meanwhile is simply not among them);
    with ``below_priority``, only jobs more urgent than that."""
    if limit <= 0:
        return []
    holder = rt.worker_name
    urgent = () if below_priority is None else (Job.priority < below_priority,)
    with rt.db.session() as s:
        ready = [(j, v) for j, v in s.execute(select(Job.id, Job.version).where(
            Job.state == jobs.PREPARED, Job.holder == "", Job.next_attempt_at <= now(),
            *urgent).order_by(Job.priority, Job.created_at).limit(limit)).all()]
        won = set(jobs.claim_each(s, ready, (jobs.PREPARED,), jobs.INFERRING, holder,
                                  f"worker {holder}", Job.next_attempt_at <= now(),
                                  worker=holder))
    return [pair for pair in ready if pair in won]


def stored_model_inputs(rt: Runtime, claimed: list[Pair]) -> dict[int, bytes | None]:
    """The model input prepare stored, by job id."""
    with rt.db.session() as s:
        return {row.id: row.model_input for row in s.scalars(
            select(Job).where(Job.id.in_([j for j, _ in claimed]))).all()}


def stored_input_sizes(rt: Runtime, claimed: list[Pair]) -> dict[int, tuple[int, int]]:
    """(bytes of the stored model input, priority) by job id, reading no image: the
    engine feeder reads each image only when a request sends it (``model_input``)."""
    with rt.db.session() as s:
        rows = s.execute(select(Job.id, func.coalesce(func.length(Job.model_input), 0),
                                Job.priority).where(
            Job.id.in_([j for j, _ in claimed]))).all()
        return {job_id: (int(size), priority) for job_id, size, priority in rows}


def model_input(rt: Runtime, job_id: int) -> bytes:
    """One job's stored model input (empty when there is none)."""
    with rt.db.session() as s:
        return s.scalar(select(Job.model_input).where(Job.id == job_id)) or b""


def retry_inference_later(rt: Runtime, batch: list[Pair], error: str,
                          permanent: bool) -> None:
    """A backend failure: back to ``prepared`` with a scheduled next attempt, or failed."""
    settings = rt.settings
    for job_id, version in batch:
        with rt.db.session() as s:
            row = s.get(Job, job_id)
            if row is None:
                continue
            retries = row.retries + 1
            if permanent or retries > settings.inference_max_retries:
                jobs.fail(s, job_id, version, rt.worker_name,
                          f"inference: {error}" if permanent else
                          f"inference failed {retries - 1} times; last: {error}")
                continue
            due = now() + jobs.backoff(retries, settings.retry_backoff_seconds,
                                       settings.retry_max_backoff_seconds)
            s.execute(update(Job).where(Job.id == job_id, Job.holder == rt.worker_name)
                      .values(retries=retries, last_error=error))
            s.commit()
            jobs.requeue(s, job_id, version, (rt.worker_name,), (jobs.INFERRING,),
                         jobs.PREPARED, f"retry {retries} at {jobs.iso(due)}: {error}",
                         count_attempt=False, next_attempt_at=due)
        log.warning("job %d v%d: inference failed (%s)", job_id, version, error)


def store_payloads(rt: Runtime, payloads: list[tuple[Pair, dict[str, Any]]]) -> list[Pair]:
    """Record each job's result and let it wait for its report, in one transaction; the
    jobs stored (not one this process no longer holds: taken over meanwhile, the new
    holder's result counts)."""
    stored = []
    with rt.db.session() as s:
        for (job_id, version), payload in payloads:
            res = s.execute(update(Job).where(Job.id == job_id, Job.version == version,
                                              Job.state == jobs.INFERRING,
                                              Job.holder == rt.worker_name)
                            .values(result=json.dumps(payload),
                                    holder="", held_since=0.0, last_error=""))
            if res.rowcount == 1:  # type: ignore[attr-defined]
                stored.append((job_id, version))
        s.commit()
    return stored


# -- report ---------------------------------------------------------------------------

def claim_for_report(rt: Runtime, job_id: int, version: int) -> Job | None:
    """Take a job with a result for its report (or again, if this process holds it)."""
    with rt.db.session() as s:
        if not jobs.claim(s, job_id, version, (jobs.INFERRING, jobs.REPORTING), jobs.REPORTING,
                          rt.worker_name, "", Job.result.is_not(None)):
            return None
        job = s.get(Job, job_id)
        assert job is not None and job.result is not None
        return job


def finish_without_sr(rt: Runtime, job: Job) -> bool:
    """A PNG/JPEG from a batch: a result, but nothing to build an SR from."""
    with rt.db.session() as s:
        return jobs.advance(s, job.id, job.version, rt.worker_name, (jobs.REPORTING,),
                            jobs.DONE, "image input: result stored, no SR", release=True)


def sends_srs(s: Session, job: Job) -> bool:
    """Live jobs send their SR to every destination; a batch run's only when it asks."""
    if job.batch_run_id is None:
        return True
    run = s.get(BatchRun, job.batch_run_id)
    return bool(run is not None and run.send_srs)


def routed_destinations(rt: Runtime, job: Job) -> tuple[Destination, ...]:
    """Where the job's rule sends its SR: the destination set recorded when the study was
    routed (so a rules reload since then changes nothing for it), else the set by name
    as this process knows it, else (default rule) the default destinations."""
    if job.destinations:
        return parse_destinations(job.destinations)
    return rt.settings.destination_set(job.destination_set)


def record_sr(rt: Runtime, job: Job, sop_instance_uid: str, path: Path) -> bool:
    """The SR is in the outbox: note it, plan one delivery per destination, move on."""
    with rt.db.session() as s:
        send = sends_srs(s, job)
        row = s.get(Job, job.id)
        assert row is not None
        row.sr_sop_instance_uid = sop_instance_uid
        row.sr_path = str(path)
        deliveries.plan(s, job.id, deliveries.FIRST_SR,
                        [str(d) for d in routed_destinations(rt, row)] if send else [])
        s.commit()
        return jobs.advance(s, job.id, job.version, rt.worker_name, (jobs.REPORTING,),
                            jobs.DELIVERING, f"SR {sop_instance_uid}")


# -- deliver --------------------------------------------------------------------------

def held_for_delivery(rt: Runtime, job_id: int, version: int) -> Job | None:
    """The job, held by this process for delivery (taken if it waits), or None."""
    holder = rt.worker_name
    with rt.db.session() as s:
        job = s.get(Job, job_id)
        if job is None or job.version != version or job.state != jobs.DELIVERING:
            return None
        if job.holder != holder and not jobs.claim(s, job_id, version, (jobs.DELIVERING,),
                                                   jobs.DELIVERING, holder, "delivery attempt"):
            return None
        return s.get(Job, job_id)


def pending_deliveries(rt: Runtime, job_id: int) -> list[Delivery]:
    """The first SR's deliveries not yet done (due now or scheduled later)."""
    with rt.db.session() as s:
        return deliveries.not_done(s, job_id, deliveries.FIRST_SR)


def finish_delivery(rt: Runtime, job_id: int, version: int) -> bool:
    """Done when every delivery is; otherwise release the job until the next is due."""
    with rt.db.session() as s:
        waiting = deliveries.not_done(s, job_id, deliveries.FIRST_SR)
        if waiting:
            next_at = min(d.next_attempt_at for d in waiting)
            errors = "; ".join(f"{d.destination}: {d.detail}" for d in waiting if d.detail)
            jobs.release(s, job_id, version, rt.worker_name,
                         next_attempt_at=max(next_at, now()), last_error=errors)
            return False
        sent = len(deliveries.rows(s, job_id, deliveries.FIRST_SR))
        return jobs.advance(s, job_id, version, rt.worker_name, (jobs.DELIVERING,), jobs.DONE,
                            f"{sent} destination(s)" if sent else "no destination: SR kept "
                            "in the outbox", release=True)
