"""Study assembly: once a study has been quiet for a while, admit it and create its job.

Works only from the database and the spool, so after a restart it simply carries on:
an open study is one whose ``assembled_at`` is empty.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from pydicom import dcmread
from sqlalchemy import select
from sqlalchemy.orm import Session

from dicom_gateway.routing.admission import Candidate
from dicom_gateway.routing.facts import Facts
from dicom_gateway.routing.rules import RuleSet
from dicom_gateway.routing.study import route_study
from worker.ingest.routing import note_timeouts
from worker.store import jobs
from worker.store.db import BatchItem, Database, Instance, Job, JobEvent, Study, now
from worker.store.jobs import BATCH_PRIORITY, LIVE_PRIORITY

log = logging.getLogger(__name__)

Enqueue = Callable[[int, int], None]


def header_json(path: Path) -> str:
    """The source header as DICOM JSON, without pixels or large binary values."""
    ds = dcmread(path, stop_before_pixels=True)
    return str(ds.to_json(bulk_data_threshold=4096,
                          bulk_data_element_handler=lambda _el: "omitted:bulk-data"))


def _candidates(instances: list[Instance], called_ae: str = ""
                ) -> tuple[list[tuple[Candidate, Facts]], dict[str, str]]:
    """Each readable instance's admission facts and what its rules can see (the header,
    read once, large values deferred; the association's AE titles)."""
    cands, unreadable = [], {}
    for inst in instances:
        try:
            ds = dcmread(Path(inst.path), defer_size=1024)
            cands.append((Candidate.from_dataset(ds), Facts(ds, inst.calling_ae, called_ae)))
        except Exception as exc:  # noqa: BLE001 - a bad file is skipped with its reason
            unreadable[inst.sop_instance_uid] = f"unreadable header: {exc}"
    return cands, unreadable




def batch_run_of(s: Session, study_uid: str) -> int | None:
    """The batch run a study was fetched for (its job then waits behind live traffic)."""
    return s.scalar(select(BatchItem.run_id).where(
        BatchItem.study_instance_uid == study_uid, BatchItem.state == "fetched")
        .order_by(BatchItem.id.desc()).limit(1))


def reprocess(db: Database, study_uid: str, run_id: int | None, reason: str) -> int | None:
    """A new version of a study's job for the same admitted instance (a batch run asked
    for results from another model or conversion); its id, or None if no job existed."""
    with db.session() as s:
        latest = s.scalar(select(Job).where(Job.study_instance_uid == study_uid)
                          .order_by(Job.version.desc()))
        if latest is None or latest.state not in jobs.TERMINAL:
            return None
        t = now()
        job = Job(study_instance_uid=study_uid, version=latest.version + 1,
                  sop_instance_uid=latest.sop_instance_uid, state=jobs.QUEUED, created_at=t,
                  updated_at=t, source_header=latest.source_header,
                  priority=BATCH_PRIORITY, batch_run_id=run_id, origin=latest.origin,
                  rule=latest.rule, destination_set=latest.destination_set,
                  destinations=latest.destinations)
        s.add(job)
        s.flush()
        s.add(JobEvent(job_id=job.id, state=jobs.RECEIVED, at=t, detail=reason))
        s.add(JobEvent(job_id=job.id, state=jobs.QUEUED, at=t, detail=reason))
        s.commit()
        return job.id


def job_priority(rule_priority: str, run_id: int | None, calling_ae: str,
                 batch_calling_aets: tuple[str, ...]) -> int:
    """A batch run's study always waits behind live traffic; otherwise the admitting
    rule's priority, or (default rule, or a rule that names none) the calling AE's."""
    if run_id is not None or rule_priority == "batch":
        return BATCH_PRIORITY
    if rule_priority == "live":
        return LIVE_PRIORITY
    return BATCH_PRIORITY if calling_ae in batch_calling_aets else LIVE_PRIORITY


def _record_admission(instances: list[Instance], admitted: str | None,
                      skipped: dict[str, str]) -> None:
    """Each instance's outcome and, for the skipped, its reason (a rule's or admission's)."""
    for inst in instances:
        if inst.sop_instance_uid == admitted:
            inst.admission, inst.skip_reason = "admitted", ""
        else:
            inst.admission = "skipped"
            inst.skip_reason = skipped.get(inst.sop_instance_uid, "not admitted")


def assemble_study(db: Database, study_uid: str,
                   batch_calling_aets: tuple[str, ...] = (), rules: RuleSet | None = None,
                   called_ae: str = "") -> int | None:
    """Route and admit one settled study; return the new job's id (None when no new job).

    The site's rules decide per instance (first match wins); the built-in admission
    then picks among the instances no rule skipped.  With no rules: today's admission."""
    with db.session() as s:
        study = s.scalar(select(Study).where(Study.study_instance_uid == study_uid))
        if study is None or study.assembled_at is not None:
            return None
        instances = list(s.scalars(
            select(Instance).where(Instance.study_instance_uid == study_uid)
        ).all())
        cands, unreadable = _candidates(instances, called_ae)
        decision = route_study(rules or RuleSet(), cands, unreadable)
        if decision.timed_out:
            note_timeouts(study_uid, decision.timed_out)
        _record_admission(instances, decision.admitted, decision.skipped)
        t = now()
        study.assembled_at = t
        study.outcome = decision.outcome[:255]
        study.rule = decision.rule[:255]
        latest = s.scalar(
            select(Job).where(Job.study_instance_uid == study_uid).order_by(Job.version.desc())
        )
        if decision.admitted is None or (
            latest is not None and latest.sop_instance_uid == decision.admitted
        ):
            s.commit()
            if decision.admitted is None:
                log.info("study %s: no job (rule %s: %s)", study_uid, decision.rule,
                         decision.outcome)
            return None
        admitted = next(i for i in instances if i.sop_instance_uid == decision.admitted)
        version = 1 if latest is None else latest.version + 1
        run_id = batch_run_of(s, study_uid)
        job = Job(
            study_instance_uid=study_uid, version=version, sop_instance_uid=decision.admitted,
            state=jobs.QUEUED, created_at=t, updated_at=t,
            source_header=header_json(Path(admitted.path)),
            priority=job_priority(decision.priority, run_id, admitted.calling_ae,
                                  batch_calling_aets),
            batch_run_id=run_id, rule=decision.rule, destination_set=decision.destinations,
            destinations=(rules or RuleSet()).destination_sets.get(decision.destinations, ""),
        )
        s.add(job)
        if latest is not None and latest.state not in jobs.TERMINAL:
            latest.state, latest.reason = jobs.SUPERSEDED, f"superseded by version {version}"
        s.flush()
        received_at = study.first_received_at if latest is None else study.last_received_at
        s.add(JobEvent(job_id=job.id, state=jobs.RECEIVED, at=received_at,
                       detail=f"{len(instances)} instance(s)"))
        s.add(JobEvent(job_id=job.id, state=jobs.QUEUED, at=t,
                       detail=decision.outcome))
        s.commit()
        log.info("study %s: job %d version %d for %s (rule %s)", study_uid, job.id, version,
                 decision.admitted, decision.rule)
        return job.id


def assemble_ready(db: Database, quiet_seconds: float, enqueue: Enqueue,
                   batch_calling_aets: tuple[str, ...] = (), rules: RuleSet | None = None,
                   called_ae: str = "") -> list[int]:
    """Assemble every study quiet for ``quiet_seconds``; enqueue the jobs created."""
    cutoff = now() - quiet_seconds
    with db.session() as s:
        ready = s.scalars(
            select(Study.study_instance_uid).where(
                Study.assembled_at.is_(None), Study.last_received_at <= cutoff
            )
        ).all()
    created = []
    for uid in ready:
        job_id = assemble_study(db, uid, batch_calling_aets, rules, called_ae)
        if job_id is not None:
            created.append(job_id)
            with db.session() as s:
                job = s.get(Job, job_id)
                assert job is not None
                enqueue(job.id, job.version)
    return created
