"""``cxr-gateway batch``: retrospective studies through the same pipeline as live traffic.

A batch is a named run in the database.  It first lists its source into ``batch_items``
(one per study; a folder's files into ``batch_files``), committing as it goes, then feeds
the studies to the running gateway, reading at most ``--chunk`` ahead of the model: each is
fetched into the spool and the database as the listener would record it (or, from a
PACS, C-MOVEd to the gateway's own listener), admitted, converted, queued at batch
priority (live studies keep going first) and inferred by the same workers.  PNG/JPEG
studies (a folder with a CSV) skip DICOM admission and conversion and go straight to the
model.  Results are read back from the jobs, and the predictions written from the
database, so a run killed at any moment is finished by running it again: studies already
done (with the same model, prompt and conversion) are not inferred twice.

This module is the run loop (``Batch``) and what the CLI imports; the parts it drives
live beside it: ``batch_sources`` (one class per kind of source), ``batch_intake`` (a
DICOM instance recorded as the listener would), ``batch_items`` (the run's rows and
their states) and ``batch_outputs`` (predictions, summary, status).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import func, select, update

from dicom_gateway.transfer.retrieve import StudyQuery
from models.backend import BackendError, model_key, stored_identity
from models.prompts import resolve_prompt
from models.registry import describe
from worker.research.batch_items import (
    DONE,
    FAILED,
    FETCHED,
    FINISHED,
    PENDING,
    SKIP,
    SKIPPED,
    BatchError,
    clear_listing,
    count_items,
    counts_by_state,
    insert_listing,
    mark,
)
from worker.research.batch_outputs import (
    PREDICTION_FIELDS,
    find_run,
    prediction_rows,
    status_of,
    write_outputs,
)
from worker.research.batch_sources import FolderSource, RunRef, Source, kind_of, make_source
from worker.runtime import Runtime
from worker.store import jobs
from worker.store.db import BatchItem, BatchRun, Job, Study, WorkerProcess, now

__all__ = ["DONE", "FAILED", "FETCHED", "FINISHED", "PENDING", "PREDICTION_FIELDS", "SKIPPED",
           "Batch", "BatchError", "BatchOptions", "find_run", "kind_of", "model_key_for",
           "prediction_rows", "status_of", "write_outputs"]

log = logging.getLogger(__name__)
# A fetched study with nothing received this long after the quiet period is fetched again.
REFETCH_GRACE_S = 60


@dataclass
class BatchOptions:
    """One ``batch run`` command line: the source, and how to read and feed it."""

    name: str
    source: str
    kind: str  # folder | images | pacs | dicomweb (batch_sources.kind_of)
    csv: Path | None = None
    query: StudyQuery = field(default_factory=StudyQuery)
    retrieve: str = "move"  # move | get
    send_srs: bool = False
    chunk: int = 100
    out_dir: Path | None = None


def model_key_for(rt: Runtime) -> str:
    """Which model this run's results come from (``models.backend.model_key`` of the
    configured backend), known here without loading it (the gateway node may have no
    torch) and so built exactly as the worker's stored results are."""
    try:
        return model_key(describe(rt.settings.backend_config()))
    except BackendError as exc:
        raise BatchError(f"cannot tell which model revision the model server serves ({exc}); "
                         "declare it with CXR_MODEL_REVISION") from exc


class Batch:
    """One run, driven to completion (or as far as it gets before it is stopped)."""

    def __init__(self, rt: Runtime, options: BatchOptions,
                 publish_infer: Callable[[int, int], None]) -> None:
        self.rt, self.options, self.publish_infer = rt, options, publish_infer
        self.db = rt.db
        self.key = model_key_for(rt)
        self.run = self._run_row()
        self.out_dir = options.out_dir or rt.settings.data_dir / "batches" / options.name
        self.source: Source = make_source(
            options.kind, RunRef(rt, self.run.id, self.run.name), options.source, options.csv,
            options.query, options.retrieve, publish_infer)

    def _run_row(self) -> BatchRun:
        """The run's row: made on the first run, checked against the source on a rerun."""
        o = self.options
        with self.db.session() as s:
            run = s.scalar(select(BatchRun).where(BatchRun.name == o.name))
            if run is None:
                run = BatchRun(name=o.name, source=o.source, kind=o.kind,
                               options=json.dumps({"csv": str(o.csv or ""),
                                                   "query": o.query.__dict__,
                                                   "retrieve": o.retrieve}),
                               model_key=self.key, prompt=resolve_prompt(),
                               conversion=self.rt.settings.conversion, send_srs=o.send_srs,
                               created_at=now())
                s.add(run)
                s.commit()
            elif run.source != o.source:
                raise BatchError(f"batch {o.name!r} reads {run.source}, not {o.source}: "
                                 "choose another name for another source")
            return run

    # -- listing ----------------------------------------------------------------------------

    def scan(self) -> int:
        """List the source into the database (once; an interrupted listing restarts)."""
        if self.run.scanned_at is not None:
            return self._count()
        clear_listing(self.db, self.run.id)  # a listing cut short: no study was fetched yet
        insert_listing(self.db, self.run.id, self.source.studies())
        if isinstance(self.source, FolderSource) and self.source.unreadable:
            log.info("batch %s: %d files in %s are not DICOM; passed by", self.run.name,
                     self.source.unreadable, self.options.source)
        with self.db.session() as s:
            s.execute(update(BatchRun).where(BatchRun.id == self.run.id)
                      .values(scanned_at=now()))
            s.commit()
        self.run.scanned_at = now()
        return self._count()

    def _count(self, state: str | None = None) -> int:
        return count_items(self.db, self.run.id, state)

    # -- fetching and following -------------------------------------------------------------

    def _existing_result(self, item: BatchItem) -> Job | None:
        """A finished job for this study already made with this run's model settings."""
        with self.db.session() as s:
            job = s.scalar(select(Job).where(Job.study_instance_uid == item.study_instance_uid)
                           .order_by(Job.version.desc()))
        if job is None or job.state not in (jobs.DONE, jobs.FAILED):
            return None
        if not job.result:  # failed before the model (conversion): no setting changes that
            return job if job.state == jobs.FAILED else None
        result = json.loads(job.result)
        same = model_key(stored_identity(result)) == self.key and \
            result.get("prompt") == self.run.prompt and \
            job.conversion.startswith(self.run.conversion)
        return job if same else None

    def fetch(self, item: BatchItem) -> None:
        """Bring one study into the gateway (or reuse what it already has)."""
        done = self._existing_result(item) if item.study_instance_uid else None
        if done is not None:
            self._finish(item.id, done)
            return
        mark(self.db, item.id, state=FETCHED, fetched_at=now())
        try:
            reason = self.source.fetch(item)
        except Exception as exc:  # noqa: BLE001 - recorded on the study, the run goes on
            reason = f"fetch failed: {exc}"
        if reason:
            mark(self.db, item.id, state=SKIPPED if reason.startswith(SKIP) else FAILED,
                 reason=reason.removeprefix(SKIP), finished_at=now())

    def _finish(self, item_id: int, job: Job) -> None:
        state = DONE if job.state == jobs.DONE else FAILED
        mark(self.db, item_id, state=state, job_id=job.id, reason=job.reason,
             finished_at=now())

    def follow(self) -> int:
        """Settle fetched studies whose outcome is known; how many settled."""
        with self.db.session() as s:
            fetched = list(s.scalars(select(BatchItem).where(
                BatchItem.run_id == self.run.id, BatchItem.state == FETCHED)))
        return sum(self._settle(item) for item in fetched)

    def _settle(self, item: BatchItem) -> bool:
        """Give one fetched study its outcome if it has one; whether it got one."""
        with self.db.session() as s:
            job = s.get(Job, item.job_id) if item.job_id else s.scalar(
                select(Job).where(Job.study_instance_uid == item.study_instance_uid,
                                  Job.created_at >= (item.fetched_at or 0) - 1)
                .order_by(Job.version.desc()))
            study = s.scalar(select(Study).where(
                Study.study_instance_uid == item.study_instance_uid))
        if job is not None and job.state in jobs.TERMINAL:
            if job.state == jobs.SUPERSEDED:
                return False
            self._finish(item.id, job)
            return True
        if study is None and (item.fetched_at or 0) < now() - (
                self.rt.settings.study_quiet_seconds + REFETCH_GRACE_S):
            # fetched by a run that was killed mid-fetch, and nothing arrived: again
            mark(self.db, item.id, state=PENDING, fetched_at=None)
            return False
        if job is None and study is not None and study.assembled_at is not None:
            if self._job_in_flight(item.study_instance_uid):
                return False  # an earlier run's (or live traffic's) job: wait for its result
            latest = self._existing_result(item)
            if latest is not None:
                self._finish(item.id, latest)
            else:
                mark(self.db, item.id, state=SKIPPED, reason=study.outcome, finished_at=now())
            return True
        return False

    def _job_in_flight(self, study_uid: str) -> bool:
        """Whether the study has an unfinished job (one this run did not create: a rerun
        after a kill finds the first run's jobs still working)."""
        with self.db.session() as s:
            return s.scalar(select(func.count()).select_from(Job).where(
                Job.study_instance_uid == study_uid,
                Job.state.not_in(tuple(jobs.TERMINAL)))) != 0

    def gateway_alive(self) -> bool:
        """Whether a ``serve`` process beats for this database (it assembles and feeds)."""
        with self.db.session() as s:
            return bool(s.scalar(select(func.count()).select_from(WorkerProcess).where(
                WorkerProcess.kind == "serve", WorkerProcess.stopped_at.is_(None),
                WorkerProcess.last_beat >= now() - self.rt.settings.liveness_timeout_seconds)))

    def drive(self, progress: Callable[[dict[str, int]], None] | None = None,
              poll: float = 0.5) -> None:
        """Fetch and follow until every study has an outcome, reading at most ``chunk``
        ahead of the model."""
        warned = False
        while True:
            for item in self._next_pending():
                self.fetch(item)
            self.follow()
            if progress is not None:
                progress(self.counts())
            if self._count(FETCHED) == 0 and self._count(PENDING) == 0:
                break
            if not warned and not self.gateway_alive():
                log.warning("no gateway (cxr-gateway serve) is running for this database: "
                            "fetched studies wait until one does")
                warned = True
            time.sleep(poll)
        with self.db.session() as s:
            s.execute(update(BatchRun).where(BatchRun.id == self.run.id)
                      .values(finished_at=now()))
            s.commit()

    def _next_pending(self) -> list[BatchItem]:
        """As many pending studies as fit beside those read ahead (``--chunk``)."""
        room = max(0, self.options.chunk - self._read_ahead())
        if not room:
            return []
        with self.db.session() as s:
            return list(s.scalars(select(BatchItem).where(
                BatchItem.run_id == self.run.id, BatchItem.state == PENDING)
                .order_by(BatchItem.id).limit(room)))

    def _read_ahead(self) -> int:
        """Fetched studies not yet at the model: what ``--chunk`` bounds.  A study prepared
        (or further, short of its outcome) no longer counts, so the chunk limits how far the
        source is read ahead of conversion, never how many studies an engine is offered."""
        at_model = (jobs.PREPARED, jobs.INFERRING, jobs.REPORTING, jobs.DELIVERING)
        with self.db.session() as s:
            past = s.scalar(select(func.count()).select_from(Job).where(
                Job.batch_run_id == self.run.id, Job.state.in_(at_model))) or 0
        return max(0, self._count(FETCHED) - past)

    def counts(self) -> dict[str, int]:
        """This run's studies per state."""
        return counts_by_state(self.db, self.run.id)

    def write_outputs(self) -> dict[str, Path]:
        """The predictions and summary of this run, into its output folder."""
        return write_outputs(self.rt, self.run, self.out_dir)
