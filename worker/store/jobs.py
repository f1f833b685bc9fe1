"""The job state machine, with holders.

Every change is one conditional UPDATE (``WHERE state IN (...) AND version = ? AND
holder = ?``) plus an event row, in one transaction.  A redelivered or duplicated task
therefore finds the job already past its stage, or held by someone else, and does
nothing: Celery may deliver twice, the database decides once.

A job is either *held* (``holder`` names the process working on it, whose heartbeat
in ``workers`` vouches for it) or *waiting* (``holder`` is empty: in a queue, or for a
scheduled retry at ``next_attempt_at``).  Only a held job whose holder died counts an
attempt when it is taken over; waiting never does.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from worker.store.db import Delivery, Job, JobEvent, now

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

# A job's priority: the order of the broker's queues, of claims, and of requests inside an
# inference engine (vLLM's ``priority``): lower first.  Batch runs always wait behind live.
LIVE_PRIORITY = 0
BATCH_PRIORITY = 9

ACTIVE = (QUEUED, PREPARING, PREPARED, INFERRING, REPORTING, DELIVERING)
TERMINAL = (DONE, SKIPPED, FAILED, SUPERSEDED)


def _event(session: Session, job_id: int, state: str, t: float, detail: str) -> None:
    session.add(JobEvent(job_id=job_id, state=state, at=t, detail=detail))


def _change(session: Session, job_id: int, version: int, from_states: Iterable[str],
            holders: Iterable[str], values: dict[str, Any], event: str | None,
            detail: str, *extra: Any) -> bool:
    """The one conditional UPDATE every change is made of; commits, or rolls back."""
    t = now()
    res = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.version == version, Job.state.in_(tuple(from_states)),
               Job.holder.in_(tuple(holders)), *extra)
        .values(updated_at=t, **values)
    )
    if res.rowcount != 1:  # type: ignore[attr-defined]
        session.rollback()
        return False
    if event is not None:
        _event(session, job_id, event, t, detail)
    session.commit()
    return True


def claim(session: Session, job_id: int, version: int, from_states: Iterable[str],
          to_state: str, holder: str, detail: str = "", *extra: Any) -> bool:
    """Take a waiting job (no holder) into ``to_state`` as ``holder``."""
    t = now()
    return _change(session, job_id, version, from_states, ("",),
                   _claimed(to_state, holder, t), to_state, detail, *extra)


def _claimed(to_state: str, holder: str, t: float) -> dict[str, Any]:
    return {"state": to_state, "holder": holder, "held_since": t, "next_attempt_at": 0.0}


def claim_each(session: Session, pairs: Iterable[tuple[int, int]], from_states: Iterable[str],
               to_state: str, holder: str, detail: str = "", *extra: Any,
               **values: Any) -> list[tuple[int, int]]:
    """``claim`` for several jobs at once: one conditional UPDATE for them all (and an
    event each), one commit, so one disk flush, which is what lets one GPU worker keep a
    server's many slots fed.  The jobs won (a job's id names one version)."""
    wanted = dict(pairs)
    if not wanted:
        return []
    t = now()
    won = session.execute(
        update(Job).where(Job.id.in_(list(wanted)), Job.state.in_(tuple(from_states)),
                          Job.holder == "", *extra)
        .values(updated_at=t, **_claimed(to_state, holder, t), **values)
        .returning(Job.id, Job.version)).all()
    for job_id, _ in won:
        _event(session, job_id, to_state, t, detail)
    session.commit()
    return [(job_id, version) for job_id, version in won]


def advance(session: Session, job_id: int, version: int, holder: str,
            from_states: Iterable[str], to_state: str, detail: str = "",
            release: bool = False) -> bool:
    """Move a job this holder holds; ``release`` leaves it waiting for the next stage."""
    values: dict[str, Any] = {"state": to_state}
    if release:
        values.update(holder="", held_since=0.0)
    return _change(session, job_id, version, from_states, (holder,), values, to_state, detail)


def release(session: Session, job_id: int, version: int, holder: str,
            next_attempt_at: float = 0.0, last_error: str | None = None) -> bool:
    """Give a held job back (state unchanged), optionally scheduled for a later attempt."""
    values: dict[str, Any] = {"holder": "", "held_since": 0.0,
                              "next_attempt_at": next_attempt_at}
    if last_error is not None:
        values["last_error"] = last_error
    return _change(session, job_id, version, ACTIVE, (holder,), values, None, "")


def fail(session: Session, job_id: int, version: int, holder: str, reason: str) -> bool:
    """End a job as failed: by its holder, or by anyone while it waits."""
    return _change(session, job_id, version, ACTIVE, ("", holder),
                   {"state": FAILED, "reason": reason, "holder": "", "held_since": 0.0,
                    "next_attempt_at": 0.0}, FAILED, reason)


def resume_state(state: str, has_result: bool) -> str:
    """Where a held job waits again when its holder lets go or dies: the earliest stage
    whose inputs still exist (a stored model result is never thrown away)."""
    if state == PREPARING:
        return QUEUED
    if state == INFERRING and not has_result:
        return PREPARED
    return state


def requeue(session: Session, job_id: int, version: int, holders: Iterable[str],
            from_states: Iterable[str], to_state: str, detail: str,
            count_attempt: bool, next_attempt_at: float = 0.0) -> bool:
    """Back to waiting in ``to_state``, its holder gone (a takeover, or a let-go)."""
    values: dict[str, Any] = {"state": to_state, "holder": "", "held_since": 0.0,
                              "next_attempt_at": next_attempt_at}
    if count_attempt:
        values["attempts"] = Job.attempts + 1
    return _change(session, job_id, version, from_states, holders, values, to_state, detail)


def retry_failed(session: Session, job_id: int) -> Job | None:
    """An operator's retry: a failed job back to ``queued`` with fresh counters; the job,
    or None when it is not failed (publishing its message is the caller's part)."""
    job = session.get(Job, job_id)
    if job is None or job.state != FAILED:
        return None
    if not requeue(session, job.id, job.version, ("",), (FAILED,), QUEUED,
                   "retried by operator", count_attempt=False):
        return None
    session.execute(update(Job).where(Job.id == job_id)
                    .values(attempts=0, retries=0, reason="", last_error=""))
    session.commit()
    return session.get(Job, job_id)


def backoff(attempt: int, base: float, cap: float) -> float:
    """Seconds before retry ``attempt`` (1, 2, ...): doubling from ``base``, at most ``cap``."""
    return float(min(cap, base * 2 ** max(0, attempt - 1)))


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


def iso(t: float | None) -> str | None:
    """A timestamp as ISO 8601 UTC with milliseconds (None for unset)."""
    if not t:
        return None
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def job_summary(session: Session, job: Job) -> dict[str, object]:
    """A JSON-friendly view of one job, for the CLI, the API and the demo."""
    result = json.loads(job.result) if job.result else {}
    deliveries = session.scalars(select(Delivery).where(Delivery.job_id == job.id)
                                 .order_by(Delivery.id)).all()
    return {
        "job_id": job.id,
        "study_instance_uid": job.study_instance_uid,
        "version": job.version,
        "sop_instance_uid": job.sop_instance_uid,
        "state": job.state,
        "reason": job.reason,
        "holder": job.holder,
        "attempts": job.attempts,
        "retries": job.retries,
        "last_error": job.last_error,
        "next_attempt_at": iso(job.next_attempt_at),
        "priority": job.priority,
        "rule": job.rule,  # the routing rule that admitted it (issue 23)
        "destination_set": job.destination_set,
        "created_at": iso(job.created_at),
        "updated_at": iso(job.updated_at),
        "conversion": job.conversion,
        "backend": result.get("backend"),
        "status": result.get("status"),
        "labels": result.get("labels", []),
        "sr_sop_instance_uid": job.sr_sop_instance_uid,
        "sr_path": job.sr_path,
        # every document's (the first SR's: document ""; an addendum's: "addendum:<id>")
        "deliveries": [
            {"document": d.document, "destination": d.destination, "state": d.state,
             "attempts": d.attempts,
             "detail": d.detail, "next_attempt_at": iso(d.next_attempt_at),
             "updated_at": iso(d.updated_at)} for d in deliveries
        ],
        "timeline": [
            {"state": s.state, "at": iso(s.at), "seconds": s.seconds, "detail": s.detail}
            for s in timeline(session, job.id)
        ],
    }
