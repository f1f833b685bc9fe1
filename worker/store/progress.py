"""A batch run's progress, rate and ETA: for ``batch status`` and the dashboard alike.

The rate is studies finished over the run's own elapsed processing time: from the first
study it fetched to the last one it finished (or now, while studies are still in flight).
A fixed window said 0.033 studies/s for 20 studies done in 10 s (20 over 600 s); a run
that took 10 s for 20 studies ran at 2 studies/s, and its ETA is read from that.  Studies
a rerun found already done (never fetched again) are finished but took no time, so they
count in the progress, not in the rate.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from worker.store import jobs
from worker.store.db import BatchItem, BatchRun, now

FINISHED = ("done", "skipped", "failed")
IN_FLIGHT = ("pending", "fetched")


def rate(processed: int, first_fetch: float | None, last_finish: float | None,
         running: bool, at: float) -> tuple[float | None, float | None]:
    """(studies/s, elapsed processing seconds); None where nothing has been timed yet.
    Pure: the clock is ``at``."""
    if not processed or first_fetch is None:
        return None, None
    end = at if running else (last_finish or at)
    elapsed = max(0.0, end - first_fetch)
    return (processed / elapsed if elapsed > 0 else None), elapsed


def run_progress(session: Session, run: BatchRun, at: float | None = None) -> dict[str, Any]:
    """Counts per state, finished of total, the rate over the processing time, the ETA."""
    t = now() if at is None else at
    counts = {str(state): int(n) for state, n in session.execute(
        select(BatchItem.state, func.count()).where(BatchItem.run_id == run.id)
        .group_by(BatchItem.state)).all()}
    processed, first_fetch, last_finish = session.execute(
        select(func.count(), func.min(BatchItem.fetched_at), func.max(BatchItem.finished_at))
        .where(BatchItem.run_id == run.id, BatchItem.fetched_at.is_not(None),
               BatchItem.state.in_(FINISHED))).one()
    if first_fetch is None:  # nothing finished yet: the clock starts at the first fetch
        first_fetch = session.scalar(select(func.min(BatchItem.fetched_at)).where(
            BatchItem.run_id == run.id))
    total = sum(counts.values())
    finished = sum(counts.get(k, 0) for k in FINISHED)
    running = run.finished_at is None and any(counts.get(k, 0) for k in IN_FLIGHT)
    per_s, elapsed = rate(int(processed or 0), first_fetch, last_finish, running, t)
    left = total - finished
    return {"name": run.name, "source": run.source, "kind": run.kind,
            "listed": run.scanned_at is not None, "total": total, "finished": finished,
            "counts": counts, "rate_per_s": None if per_s is None else round(per_s, 3),
            "elapsed_s": None if elapsed is None else round(elapsed, 1),
            "eta_s": round(left / per_s) if per_s and left else (0 if not left else None),
            "running": running, "created_at": jobs.iso(run.created_at),
            "finished_at": jobs.iso(run.finished_at), "model_key": run.model_key}


def runs(session: Session, limit: int = 20) -> list[dict[str, Any]]:
    """The newest runs' progress (the dashboard's batch table)."""
    return [run_progress(session, r) for r in session.scalars(
        select(BatchRun).order_by(BatchRun.id.desc()).limit(limit)).all()]
