"""What an operator looks at: the same queries for the dashboard, the API and
``cxr-gateway status``, all read from the database (any process can answer them).
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from worker.store import engine_windows, jobs
from worker.store.db import (
    AssociationLog,
    Database,
    Instance,
    Job,
    JobEvent,
    Study,
    WorkerProcess,
    now,
    schema_revisions,
)

STAGES = (jobs.QUEUED, jobs.PREPARING, jobs.PREPARED, jobs.INFERRING, jobs.REPORTING,
          jobs.DELIVERING)


class NoDatabase(RuntimeError):
    """A read command pointed at a folder (or URL) that holds no gateway database."""


def check_database(db: Database) -> None:
    """Refuse, rather than create, a database that is not the gateway's."""
    from sqlalchemy import inspect
    from sqlalchemy.exc import OperationalError

    try:
        tables = set(inspect(db.engine).get_table_names())
    except OperationalError as exc:
        raise NoDatabase(f"cannot open the database: {str(exc).splitlines()[0]}") from None
    if not {"jobs", "studies", "instances"} <= tables:
        raise NoDatabase("it holds no gateway tables")
    current, head = schema_revisions(db.engine)
    if current != head:
        raise NoDatabase(f"its schema is at revision {current or 'none'}, this version needs "
                         f"{head}: start this version's `cxr-gateway serve` once (it migrates "
                         "at start)")


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def stage_seconds(session: Session, since: float) -> dict[str, list[float]]:
    """Seconds spent in each state by jobs whose events fall after ``since``."""
    rows = session.execute(select(JobEvent.job_id, JobEvent.state, JobEvent.at)
                           .where(JobEvent.at >= since)
                           .order_by(JobEvent.job_id, JobEvent.at, JobEvent.id)).all()
    out: dict[str, list[float]] = {}
    for i, (job_id, state, at) in enumerate(rows[:-1]):
        nxt = rows[i + 1]
        if nxt[0] == job_id:
            out.setdefault(state, []).append(nxt[2] - at)
    return out


def job_row(job: Job, result: dict[str, Any] | None = None) -> dict[str, Any]:
    """A job as one line of a list: enough to see what happened, no patient data."""
    r = result if result is not None else (json.loads(job.result) if job.result else {})
    return {
        "job_id": job.id, "version": job.version, "state": job.state, "reason": job.reason,
        "study_instance_uid": job.study_instance_uid,
        "sop_instance_uid": job.sop_instance_uid, "priority": job.priority,
        # live PACS traffic or a retrospective batch (the dashboard marks each job)
        "mode": "batch" if job.batch_run_id is not None or job.priority > 0 else "live",
        "created_at": jobs.iso(job.created_at), "updated_at": jobs.iso(job.updated_at),
        "status": r.get("status"), "labels": r.get("labels", []), "backend": r.get("backend"),
        "attempts": job.attempts, "next_attempt_at": jobs.iso(job.next_attempt_at),
        "last_error": job.last_error,
        "rule": job.rule, "destination_set": job.destination_set,
    }


def list_jobs(session: Session, state: str | None = None, since: float | None = None,
              until: float | None = None, calling_ae: str | None = None, limit: int = 100,
              offset: int = 0) -> list[dict[str, Any]]:
    query = select(Job).order_by(Job.id.desc())
    if state:
        query = query.where(Job.state == state)
    if since is not None:
        query = query.where(Job.created_at >= since)
    if until is not None:
        query = query.where(Job.created_at < until)
    if calling_ae:
        query = query.join(Instance, Instance.sop_instance_uid == Job.sop_instance_uid).where(
            Instance.calling_ae == calling_ae)
    return [job_row(j) for j in session.scalars(query.limit(limit).offset(offset)).all()]


def study_detail(session: Session, study_uid: str) -> dict[str, Any] | None:
    study = session.scalar(select(Study).where(Study.study_instance_uid == study_uid))
    if study is None:
        return None
    instances = session.scalars(select(Instance).where(
        Instance.study_instance_uid == study_uid).order_by(Instance.received_at)).all()
    versions = session.scalars(select(Job).where(
        Job.study_instance_uid == study_uid).order_by(Job.version)).all()
    return {
        "study_instance_uid": study_uid, "outcome": study.outcome, "rule": study.rule,
        "first_received_at": jobs.iso(study.first_received_at),
        "last_received_at": jobs.iso(study.last_received_at),
        "assembled_at": jobs.iso(study.assembled_at),
        "instances": [{
            "sop_instance_uid": i.sop_instance_uid, "sop_class_uid": i.sop_class_uid,
            "modality": i.modality, "series_instance_uid": i.series_instance_uid,
            "transfer_syntax_uid": i.transfer_syntax_uid, "calling_ae": i.calling_ae,
            "size": i.size, "received_at": jobs.iso(i.received_at), "admission": i.admission,
            "reason": i.skip_reason, "file_purged": i.purged_at is not None,
        } for i in instances],
        "jobs": [job_row(j) for j in versions],
    }


def list_studies(session: Session, outcome: str | None = None, limit: int = 100,
                 offset: int = 0) -> list[dict[str, Any]]:
    """Studies, newest first; ``outcome`` = admitted | skipped | open."""
    query = select(Study).order_by(Study.last_received_at.desc())
    if outcome == "open":
        query = query.where(Study.assembled_at.is_(None))
    elif outcome == "admitted":
        query = query.where(Study.outcome.like("admitted%"))
    elif outcome == "skipped":
        query = query.where(Study.assembled_at.is_not(None),
                            Study.outcome.not_like("admitted%"))
    studies = session.scalars(query.limit(limit).offset(offset)).all()
    counts = dict(session.execute(
        select(Instance.study_instance_uid, func.count()).where(
            Instance.study_instance_uid.in_([s.study_instance_uid for s in studies]))
        .group_by(Instance.study_instance_uid)).all())
    return [{"study_instance_uid": s.study_instance_uid,
             "state": "open" if s.assembled_at is None else
             "admitted" if s.outcome.startswith("admitted") else "skipped",
             "outcome": s.outcome, "rule": s.rule,
             "instances": counts.get(s.study_instance_uid, 0),
             "last_received_at": jobs.iso(s.last_received_at)} for s in studies]


def list_associations(session: Session, limit: int = 100,
                      since: float | None = None) -> list[dict[str, Any]]:
    query = select(AssociationLog).order_by(AssociationLog.id.desc())
    if since is not None:
        query = query.where(AssociationLog.started_at >= since)
    return [{"id": a.id, "calling_ae": a.calling_ae, "called_ae": a.called_ae, "peer": a.peer,
             "started_at": jobs.iso(a.started_at), "ended_at": jobs.iso(a.ended_at),
             "stored": a.stored, "failed": a.failed, "outcome": a.outcome,
             "statuses": json.loads(a.statuses or "{}")}
            for a in session.scalars(query.limit(limit)).all()]


def overview(db: Database, queue_depth: Callable[[str], int | None] | None = None,
             liveness_timeout: float = 30.0, window: float = 3600.0,
             recent: int = 20) -> dict[str, Any]:
    t = now()
    with db.session() as s:
        by_state = dict(Counter(s.scalars(select(Job.state)).all()))
        done_recent = s.scalar(select(func.count()).select_from(JobEvent).where(
            JobEvent.state == jobs.DONE, JobEvent.at >= t - window)) or 0
        received_recent = s.scalar(select(func.count()).select_from(Instance).where(
            Instance.received_at >= t - window)) or 0
        stages = stage_seconds(s, t - window)
        recent_jobs = [job_row(j) for j in s.scalars(
            select(Job).order_by(Job.updated_at.desc()).limit(recent)).all()]
        failures = [job_row(j) for j in s.scalars(
            select(Job).where(Job.state == jobs.FAILED).order_by(Job.updated_at.desc())
            .limit(recent)).all()]
        skipped = list_studies(s, "skipped", limit=recent)
        workers = [{"name": w.name, "kind": w.kind, "queues": w.queues,
                    "last_beat": jobs.iso(w.last_beat),
                    "alive": w.stopped_at is None and w.last_beat >= t - liveness_timeout}
                   for w in s.scalars(select(WorkerProcess).order_by(
                       WorkerProcess.last_beat.desc()).limit(50)).all()]
        instances = dict(Counter(s.scalars(select(Instance.admission)).all()))
        engines = [{"worker": name, **dataclasses.asdict(f)} for name, f in
                   sorted(engine_windows.live(s, liveness_timeout).items())]
    return {
        "at": jobs.iso(t),
        "jobs_by_state": by_state,
        "instances_by_admission": instances,
        "queue_depth": {q: (queue_depth(q) if queue_depth else None) for q in ("cpu", "gpu")},
        "throughput": {"window_s": window, "jobs_done": done_recent,
                       "instances_received": received_recent,
                       "jobs_done_per_hour": round(done_recent * 3600 / window, 1)},
        "stages": {state: {"count": len(v), "p50_s": percentile(v, 0.5),
                           "p95_s": percentile(v, 0.95)}
                   for state, v in stages.items() if state in (jobs.RECEIVED, *STAGES)},
        "recent_jobs": recent_jobs,
        "failures": failures,
        "skipped_studies": skipped,
        "workers": workers,
        "engines": engines,
    }
