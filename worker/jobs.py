"""The job state machine.

Every transition is one conditional UPDATE (``WHERE state IN (...) AND version = ?``)
plus an event row, in one transaction.  A redelivered or duplicated task therefore
finds the job already past its stage and does nothing: Celery may deliver twice, the
database decides once.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from worker.db import Delivery, Job, JobEvent, now

RECEIVED = "received"
QUEUED = "queued"
PREPARING = "preparing"
PREPARED = "prepared"  # model input stored, waiting for a GPU worker
INFERRING = "inferring"
REPORTING = "reporting"
DELIVERING = "delivering"
DONE = "done"
SKIPPED = "skipped"
FAILED = "failed"
SUPERSEDED = "superseded"

ACTIVE = (QUEUED, PREPARING, PREPARED, INFERRING, REPORTING, DELIVERING)
TERMINAL = (DONE, SKIPPED, FAILED, SUPERSEDED)


def transition(session: Session, job_id: int, version: int, from_states: Iterable[str],
               to_state: str, lease_seconds: float, detail: str = "") -> bool:
    """Move the job if (and only if) it is in one of ``from_states``; record the event."""
    t = now()
    values: dict[str, object] = {"state": to_state, "updated_at": t,
                                 "lease_until": t + lease_seconds}
    if to_state in (FAILED, SKIPPED):
        values["reason"] = detail
    res = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.version == version, Job.state.in_(tuple(from_states)))
        .values(**values)
    )
    if res.rowcount != 1:  # type: ignore[attr-defined]
        session.rollback()
        return False
    session.add(JobEvent(job_id=job_id, state=to_state, at=t, detail=detail))
    session.commit()
    return True


def renew_lease(session: Session, job_id: int, lease_seconds: float) -> None:
    session.execute(update(Job).where(Job.id == job_id).values(lease_until=now() + lease_seconds))
    session.commit()


@dataclass(frozen=True)
class StageTiming:
    state: str
    at: float
    seconds: float | None  # time spent in this state (None while it lasts)
    detail: str


def timeline(session: Session, job_id: int) -> list[StageTiming]:
    events = session.scalars(
        select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.at, JobEvent.id)
    ).all()
    out = []
    for i, ev in enumerate(events):
        nxt = events[i + 1].at if i + 1 < len(events) else None
        out.append(StageTiming(ev.state, ev.at, None if nxt is None else nxt - ev.at, ev.detail))
    return out


def job_summary(session: Session, job: Job) -> dict[str, object]:
    """A JSON-friendly view of one job, for the CLI and the demo."""
    result = json.loads(job.result) if job.result else {}
    deliveries = session.scalars(select(Delivery).where(Delivery.job_id == job.id)).all()
    return {
        "job_id": job.id,
        "study_instance_uid": job.study_instance_uid,
        "version": job.version,
        "sop_instance_uid": job.sop_instance_uid,
        "state": job.state,
        "reason": job.reason,
        "attempts": job.attempts,
        "conversion": job.conversion,
        "backend": result.get("backend"),
        "status": result.get("status"),
        "labels": result.get("labels", []),
        "sr_sop_instance_uid": job.sr_sop_instance_uid,
        "sr_path": job.sr_path,
        "deliveries": [
            {"destination": d.destination, "state": d.state, "attempts": d.attempts,
             "detail": d.detail} for d in deliveries
        ],
        "timeline": [
            {"state": s.state, "at": s.at, "seconds": s.seconds, "detail": s.detail}
            for s in timeline(session, job.id)
        ],
    }
