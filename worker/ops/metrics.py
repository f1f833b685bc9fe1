"""Prometheus metrics (prometheus-client), read from the database on each scrape.

The work happens in many processes (listener, cpu and GPU workers on other nodes), so
the metrics are not counted where things happen but read from the database, which sees
them all.  Counts and gauges are queried on each scrape; the per-stage duration
histograms, GPU batch sizes and tokens are observed incrementally from job events the
collector has not seen yet (so a scrape costs what happened since the last one).  After
a restart they start from the database's whole history, and Prometheus treats the reset
of a counter as it should.
"""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import Collector, CollectorRegistry
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from worker.ingest.routing import RULE_TIMEOUTS
from worker.store import engine_windows, jobs
from worker.store.db import (
    AssociationLog,
    Database,
    Delivery,
    Instance,
    Job,
    JobEvent,
    WorkerProcess,
    now,
)

STAGE_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, float("inf"))
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, float("inf"))


class Histogram:
    """Cumulative bucket counts and a sum, for a HistogramMetricFamily."""

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.bounds = buckets
        self.counts = [0] * len(buckets)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.sum += value
        for i, bound in enumerate(self.bounds):
            if value <= bound:
                self.counts[i] += 1

    def buckets(self) -> list[tuple[str, float]]:
        return [("+Inf" if b == float("inf") else str(b), float(c))
                for b, c in zip(self.bounds, self.counts, strict=True)]


class GatewayCollector(Collector):
    """Everything the gateway exports, as the database says."""

    def __init__(self, db: Database, spool: Path,
                 queue_depth: Callable[[str], int | None] | None = None,
                 liveness_timeout: float = 30.0) -> None:
        self.db, self.spool, self.queue_depth = db, spool, queue_depth
        self.liveness_timeout = liveness_timeout
        self._lock = threading.Lock()
        self._cursor = 0  # last JobEvent id observed
        self._open: dict[int, tuple[str, float]] = {}  # job -> (state, since)
        self._stages: dict[str, Histogram] = {}
        self._batches = Histogram(BATCH_BUCKETS)
        self._seen_batches: set[str] = set()
        self._tokens: dict[str, float] = {"findings": 0.0, "report": 0.0}

    def _advance(self) -> None:
        """Observe the job events written since the last scrape."""
        with self.db.session() as s:
            rows = s.execute(select(JobEvent.id, JobEvent.job_id, JobEvent.state, JobEvent.at)
                             .where(JobEvent.id > self._cursor).order_by(JobEvent.id)
                             .limit(200_000)).all()
            inferred: list[int] = []
            for event_id, job_id, state, at in rows:
                self._cursor = event_id
                before = self._open.pop(job_id, None)
                if before is not None:
                    hist = self._stages.setdefault(before[0], Histogram(STAGE_BUCKETS))
                    hist.observe(max(0.0, at - before[1]))
                    if before[0] == jobs.INFERRING and state == jobs.REPORTING:
                        inferred.append(job_id)
                if state not in jobs.TERMINAL:
                    self._open[job_id] = (state, at)
            for result in s.scalars(select(Job.result).where(Job.id.in_(inferred))).all():
                self._observe_result(json.loads(result) if result else {})

    def _observe_result(self, result: dict[str, Any]) -> None:
        self._tokens["findings"] += float(result.get("findings_tokens") or 0)
        self._tokens["report"] += float(result.get("report_tokens") or 0)
        batch = result.get("batch_id")
        if batch and batch not in self._seen_batches:
            self._seen_batches.add(batch)
            if len(self._seen_batches) > 100_000:
                self._seen_batches.clear()
            self._batches.observe(float(result.get("batch_size") or 1))

    def collect(self) -> Iterator[Any]:
        """One scrape; serialised, because the histograms advance a shared cursor."""
        with self._lock:
            self._advance()
            yield from self._from_database()
            stages = HistogramMetricFamily(
                "cxr_stage_duration_seconds", "Seconds jobs spent in each state",
                labels=["state"])
            for state, hist in sorted(self._stages.items()):
                stages.add_metric([state], hist.buckets(), hist.sum)
            yield stages
            batches = HistogramMetricFamily("cxr_gpu_batch_size",
                                            "Studies per batched generation")
            batches.add_metric([], self._batches.buckets(), self._batches.sum)
            yield batches
            tokens = CounterMetricFamily("cxr_tokens_generated",
                                         "Tokens the model generated", labels=["turn"])
            for turn, value in self._tokens.items():
                tokens.add_metric([turn], value)
            yield tokens
            yield rule_timeout_family()

    def _from_database(self) -> Iterator[Any]:
        """Counts and gauges, queried afresh on every scrape."""
        with self.db.session() as session:
            tables = read_tables(session, now() - self.liveness_timeout)
        yield job_family(tables.jobs_by_state)
        yield received_family(tables.received, tables.refusals)
        yield association_family(tables.associations)
        yield from delivery_families(tables.deliveries)
        yield self._queue_family()
        yield GaugeMetricFamily("cxr_spool_free_bytes", "Free disk where the spool is",
                                value=float(shutil.disk_usage(self.spool).free))
        yield from worker_families(tables.live_workers)
        yield from engine_families(self.db, self.liveness_timeout)  # issue 32
        yield routing_family(self.db)
        yield from review_families(self.db)  # issue 25: reviewer verdicts
        yield from question_families(self.db)  # issue 25: follow-up questions

    def _queue_family(self) -> GaugeMetricFamily:
        """Depth per queue, where the broker can be asked (else no sample, not 0)."""
        family = GaugeMetricFamily("cxr_queue_depth", "Messages waiting in each queue",
                                   labels=["queue"])
        for queue in ("cpu", "gpu"):
            depth = self.queue_depth(queue) if self.queue_depth else None
            if depth is not None:
                family.add_metric([queue], float(depth))
        return family


@dataclass(frozen=True)
class Tables:
    """The grouped rows one scrape reads, in one session (one consistent snapshot)."""

    jobs_by_state: dict[str, int]
    received: Sequence[Any]  # (calling_ae, admission, count)
    associations: Sequence[Any]  # (calling_ae, outcome, count, failed)
    refusals: Sequence[Any]  # (calling_ae, statuses JSON) of associations that refused
    deliveries: Sequence[Any]  # (destination, state, count, attempts)
    live_workers: Sequence[Any]  # (name, kind, queues, last_beat)


def read_tables(session: Session, live_since: float) -> Tables:
    """Everything the counts and gauges need; processes that beat since ``live_since``."""
    return Tables(
        jobs_by_state=dict(session.execute(
            select(Job.state, func.count()).group_by(Job.state)).all()),
        received=session.execute(select(Instance.calling_ae, Instance.admission,
                                        func.count())
                                 .group_by(Instance.calling_ae, Instance.admission)).all(),
        associations=session.execute(
            select(AssociationLog.calling_ae, AssociationLog.outcome, func.count(),
                   func.sum(AssociationLog.failed))
            .group_by(AssociationLog.calling_ae, AssociationLog.outcome)).all(),
        refusals=session.execute(select(AssociationLog.calling_ae, AssociationLog.statuses)
                                 .where(AssociationLog.failed > 0)).all(),
        deliveries=session.execute(select(Delivery.destination, Delivery.state,
                                          func.count(), func.sum(Delivery.attempts))
                                   .group_by(Delivery.destination, Delivery.state)).all(),
        live_workers=session.execute(
            select(WorkerProcess.name, WorkerProcess.kind, WorkerProcess.queues,
                   WorkerProcess.last_beat)
            .where(WorkerProcess.stopped_at.is_(None), WorkerProcess.last_beat >= live_since)
            .order_by(WorkerProcess.name)).all())


def job_family(by_state: dict[str, int]) -> GaugeMetricFamily:
    """Every state present, at 0 when no job is in it (an alert on one needs no ``absent()``)."""
    family = GaugeMetricFamily("cxr_jobs", "Jobs in each state", labels=["state"])
    for state in (*jobs.ACTIVE, *jobs.TERMINAL):
        family.add_metric([state], float(by_state.get(state, 0)))
    return family


def received_family(received: Iterable[Any], refusals: Iterable[Any]
                    ) -> CounterMetricFamily:
    """Stored instances by admission outcome, plus refused ones by their refusal status
    (those never reach the instances table, only the association log's tallies)."""
    family = CounterMetricFamily("cxr_instances_received",
                                 "Instances received, by calling AE and outcome "
                                 "(admitted, skipped, pending, or the refusal status)",
                                 labels=["calling_ae", "outcome"])
    for ae, admission, n in received:
        family.add_metric([ae, admission], float(n))
    refused: dict[tuple[str, str], float] = {}
    for ae, statuses in refusals:
        for status, n in json.loads(statuses or "{}").items():
            refused[(ae, status)] = refused.get((ae, status), 0.0) + n
    for (ae, status), count in sorted(refused.items()):
        family.add_metric([ae, status], count)
    return family


def association_family(associations: Iterable[Any]) -> CounterMetricFamily:
    family = CounterMetricFamily("cxr_associations",
                                 "Associations, by calling AE and outcome",
                                 labels=["calling_ae", "outcome"])
    for ae, outcome, n, _failed in associations:
        family.add_metric([ae, outcome], float(n))
    return family


def rule_timeout_family() -> CounterMetricFamily:
    """Routing rules' ``matches`` searches that ran out of time (and so were false), in
    this process: the assembler's, which runs in the gateway that serves /metrics."""
    family = CounterMetricFamily("cxr_rule_timeouts", "Routing-rule regular-expression "
                                 "searches that ran out of time (counted false)",
                                 labels=["rule"])
    for rule, n in sorted(RULE_TIMEOUTS.items()):
        family.add_metric([rule], float(n))
    return family


def delivery_families(deliveries: Iterable[Any]) -> Iterator[CounterMetricFamily]:
    """Attempts per destination, and how many of them failed: every attempt of a
    delivery that is not done failed, and all but the last of one that is done."""
    attempts = CounterMetricFamily("cxr_delivery_attempts", "SR delivery attempts",
                                   labels=["destination"])
    failures = CounterMetricFamily("cxr_delivery_failures",
                                   "SR delivery attempts that failed",
                                   labels=["destination"])
    per_dest: dict[str, list[float]] = {}
    for dest, state, n, tried in deliveries:
        row = per_dest.setdefault(dest, [0.0, 0.0])
        row[0] += float(tried or 0)
        row[1] += float(tried or 0) - (float(n) if state == "done" else 0.0)
    for dest, (total, failed) in sorted(per_dest.items()):
        attempts.add_metric([dest], total)
        failures.add_metric([dest], failed)
    yield attempts
    yield failures


def worker_families(live: Iterable[Any]) -> Iterator[GaugeMetricFamily]:
    """Process gauges for the live processes only (``(name, kind, queues, last_beat)``).

    Names are unique per process (a restart is a new name), so a series per process
    ever started would grow without bound; a process that stopped or went silent drops
    out instead (Prometheus marks its series stale).  The two counts have fixed labels
    (kinds and queues, never names) and are present at 0 for ``serve``/``worker`` and
    ``cpu``/``gpu``, so that an alert on "no GPU consumer" needs no ``absent()``.
    """
    up = GaugeMetricFamily("cxr_worker_up", "1 for each process that beat within the "
                           "liveness timeout (only those)", labels=["name", "kind", "queues"])
    beat = GaugeMetricFamily("cxr_worker_last_beat_timestamp_seconds",
                             "When each live process last beat", labels=["name", "kind"])
    kinds = {"serve": 0, "worker": 0}
    queues = {"cpu": 0, "gpu": 0}
    for name, kind, taken, last in live:
        up.add_metric([name, kind, taken], 1.0)
        beat.add_metric([name, kind], last)
        kinds[kind] = kinds.get(kind, 0) + 1
        for queue in filter(None, taken.split(",")):
            queues[queue] = queues.get(queue, 0) + 1
    alive = GaugeMetricFamily("cxr_workers_alive", "Live processes of each kind",
                              labels=["kind"])
    for kind, n in sorted(kinds.items()):
        alive.add_metric([kind], float(n))
    consumers = GaugeMetricFamily("cxr_queue_consumers",
                                  "Live processes taking each queue", labels=["queue"])
    for queue, n in sorted(queues.items()):
        consumers.add_metric([queue], float(n))
    yield up
    yield beat
    yield alive
    yield consumers


def engine_families(db: Database, timeout: float) -> Iterator[GaugeMetricFamily]:
    """Each live GPU worker's in-flight window on its engine (``models.engine_window``):
    how many studies it may keep in flight now, and how many it has; by worker name, for
    live workers only (as ``worker_families``)."""
    with db.session() as s:
        figures = engine_windows.live(s, timeout)
    window = GaugeMetricFamily(
        "cxr_engine_in_flight_window", "Studies a GPU worker may keep in flight on its "
        "inference engine now (found from the engine, at most the ceiling)",
        labels=["worker", "steered_by"])
    flying = GaugeMetricFamily("cxr_engine_in_flight", "Studies a GPU worker has in "
                               "flight on its inference engine", labels=["worker"])
    ceiling = GaugeMetricFamily("cxr_engine_in_flight_ceiling",
                                "CXR_OPENAI_MAX_IN_FLIGHT of each GPU worker",
                                labels=["worker"])
    for name, f in sorted(figures.items()):
        window.add_metric([name, f.steered_by], float(f.window))
        flying.add_metric([name], float(f.in_flight))
        ceiling.add_metric([name], float(f.ceiling))
    yield window
    yield flying
    yield ceiling


def review_families(db: Database) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
    """Reviewer verdicts recorded (every one, a revision too), and the current verdicts'
    label calls by kind (agree, disagree, not_assessable)."""
    from worker.store import reviews

    with db.session() as session:
        counted = reviews.counts(session)
    yield CounterMetricFamily("cxr_review_verdicts", "Reviewer verdicts recorded",
                              value=float(counted["reviews"]))
    calls = GaugeMetricFamily("cxr_review_label_verdicts",
                              "Label verdicts of the current reviews, by kind",
                              labels=["verdict"])
    for verdict, n in counted["label_verdicts"].items():
        calls.add_metric([verdict], float(n))
    yield calls


def question_families(db: Database) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
    """Follow-up questions: asked and answered (counters, from the table, so every API
    node agrees), and how many are in each state now (waiting, answering, failed)."""
    from worker.store import questions

    with db.session() as session:
        counted = questions.counts(session)
    yield CounterMetricFamily("cxr_questions_asked", "Follow-up questions asked",
                              value=float(sum(counted.values())))
    yield CounterMetricFamily("cxr_questions_answered", "Follow-up questions answered",
                              value=float(counted[questions.ANSWERED]))
    now_in = GaugeMetricFamily("cxr_questions", "Follow-up questions in each state",
                               labels=["state"])
    for state, n in counted.items():
        now_in.add_metric([state], float(n))
    yield now_in


def routing_family(db: Database) -> CounterMetricFamily:
    """Studies decided by each routing rule (issue 23; "default" = the built-in admission),
    admitted or skipped: the rule's name is the site's own, never a tag value."""
    from worker.store.db import Study

    admitted = Study.outcome.like("admitted%")
    with db.session() as session:
        rows = session.execute(select(Study.rule, admitted, func.count())
                               .where(Study.assembled_at.is_not(None))
                               .group_by(Study.rule, admitted)).all()
    family = CounterMetricFamily("cxr_routing_decisions",
                                 "Studies decided by each routing rule, by decision",
                                 labels=["rule", "decision"])
    for rule, was_admitted, count in rows:
        family.add_metric([rule or "default", "admitted" if was_admitted else "skipped"],
                          float(count))
    return family


def registry(collector: GatewayCollector) -> CollectorRegistry:
    """A registry of the collector alone (not the process default: no Python process
    metrics of whichever node happens to serve the scrape)."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(collector)
    return reg
