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


def reconcile(db: Database, lease_seconds: float, enqueue_prepare: Callable[[int, int], None],
              enqueue_report: Callable[[int, int], None], force: bool = False) -> int:
    """Re-enqueue jobs with expired leases (all active jobs with ``force``); return the count."""
    t = now()
    with db.session() as s:
        query = select(Job).where(Job.state.in_(jobs.ACTIVE))
        if not force:
            query = query.where(Job.lease_until < t)
        stale = s.scalars(query).all()
    count = 0
    for job in stale:
        with db.session() as s:
            row = s.get(Job, job.id)
            if row is None or row.state != job.state:
                continue
            row.attempts += 1
            s.commit()
            if row.attempts > MAX_ATTEMPTS:
                jobs.transition(s, job.id, job.version, jobs.ACTIVE, jobs.FAILED, lease_seconds,
                                f"no progress after {MAX_ATTEMPTS} leases")
                continue
            has_result = bool(row.result)
            if job.state == jobs.DELIVERING or (has_result and job.state in (jobs.INFERRING,
                                                                              jobs.REPORTING)):
                jobs.renew_lease(s, job.id, lease_seconds)
                enqueue_report(job.id, job.version)
            else:
                if job.state != jobs.QUEUED:
                    jobs.transition(s, job.id, job.version, (job.state,), jobs.QUEUED,
                                    lease_seconds, "lease expired; re-enqueued")
                else:
                    jobs.renew_lease(s, job.id, lease_seconds)
                enqueue_prepare(job.id, job.version)
        count += 1
        log.info("re-enqueued job %d v%d (was %s)", job.id, job.version, job.state)
    return count
