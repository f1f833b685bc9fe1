"""The reconciler: the database's answer to brokers that lose or repeat messages.

Any active job whose lease expired is re-enqueued at the earliest stage whose inputs
still exist: a job with a stored model result goes back to reporting (no second
inference), any other restarts from prepare.  Idempotent stages make doing this
twice harmless.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy import select

from worker import jobs
from worker.db import Database, Job, now

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
Enqueue = Callable[[int, int], None]


def reconcile(db: Database, lease_seconds: float, enqueue_prepare: Enqueue,
              enqueue_report: Enqueue, enqueue_infer: Enqueue | None = None,
              force: bool = False) -> int:
    """Re-enqueue jobs with expired leases (all active jobs with ``force``); return the count."""
    t = now()
    with db.session() as s:
        query = select(Job.id, Job.version, Job.state).where(Job.state.in_(jobs.ACTIVE))
        if not force:
            query = query.where(Job.lease_until < t)
        stale = s.execute(query).all()
    count = 0
    for job_id, version, state in stale:
        with db.session() as s:
            row = s.get(Job, job_id)
            if row is None or row.state != state or row.version != version:
                continue  # moved on since we looked
            row.attempts += 1
            s.commit()
            if row.attempts > MAX_ATTEMPTS:
                jobs.transition(s, job_id, version, jobs.ACTIVE, jobs.FAILED, lease_seconds,
                                f"no progress after {MAX_ATTEMPTS} leases")
                continue
            has_result, has_input = bool(row.result), row.model_input is not None
            if state == jobs.DELIVERING or (has_result and state in (jobs.INFERRING,
                                                                      jobs.REPORTING)):
                jobs.renew_lease(s, job_id, lease_seconds)
                enqueue_report(job_id, version)
            elif has_input and state in (jobs.PREPARED, jobs.INFERRING) and enqueue_infer:
                if state == jobs.INFERRING:  # its worker died mid-generation
                    jobs.transition(s, job_id, version, (jobs.INFERRING,), jobs.PREPARED,
                                    lease_seconds, "lease expired during inference")
                else:
                    jobs.renew_lease(s, job_id, lease_seconds)
                enqueue_infer(job_id, version)
            else:
                if state != jobs.QUEUED:
                    jobs.transition(s, job_id, version, (state,), jobs.QUEUED, lease_seconds,
                                    "lease expired; re-enqueued")
                else:
                    jobs.renew_lease(s, job_id, lease_seconds)
                enqueue_prepare(job_id, version)
        count += 1
        log.info("re-enqueued job %d v%d (was %s)", job_id, version, state)
    return count
