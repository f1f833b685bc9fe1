"""The reconciler: the database's answer to dead processes and lost or late messages.

Three sweeps, each from the database alone, each idempotent:

* takeover: a job *held* by a process whose heartbeat stopped (or past the stage
  backstop) goes back to waiting at the earliest stage whose inputs still exist (a
  stored model result is never thrown away) and is published again.  This alone counts
  an attempt; a job that keeps killing its holders fails after ``MAX_TAKEOVERS``.
* due attempts: a waiting job whose scheduled retry (delivery, inference) is due is
  published again, on whatever broker is in use.
* lost messages: a job waiting longer than ``requeue_seconds`` while its queue is empty
  (a Redis restart without persistence, a crash of the embedded queue) is published
  again.  Waiting never counts an attempt, however long.  A reviewer's follow-up
  question open that long while the ``gpu`` queue is empty gets one wake-up, so an
  acknowledged question is answered even on an idle cluster whose message was lost.
* addenda: an addendum's delivery row that is due, was held by a process that stopped
  beating, or waited past ``requeue_seconds`` with its message lost gets its
  ``cxr.addendum`` message again (``worker.store.deliveries.addenda_to_send``).

Redelivered or duplicate messages are harmless: every stage claims its job first.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import or_, select, update

from worker.settings import Settings
from worker.store import deliveries, jobs, questions
from worker.store.db import Database, Job, Question, now
from worker.store.liveness import live_names

log = logging.getLogger(__name__)

MAX_TAKEOVERS = 5
Publish = Callable[[int, int], None]
PREPARE, INFER, REPORT = "prepare", "infer", "report"
QUEUE_OF = {PREPARE: "cpu", INFER: "gpu", REPORT: "cpu"}


@dataclass
class Publishers:
    """How to put a job's next message on the broker, by stage."""

    prepare: Publish
    infer: Publish
    report: Publish
    question: Callable[[int], None] | None = None  # wakes a GPU worker for open questions
    addendum: Callable[[int], None] | None = None  # sends a question's addendum SR

    def of(self, stage: str) -> Publish:
        return {PREPARE: self.prepare, INFER: self.infer, REPORT: self.report}[stage]


@dataclass
class Sweep:
    taken_over: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    due: list[int] = field(default_factory=list)
    republished: list[int] = field(default_factory=list)
    questions_woken: bool = False
    addenda: list[int] = field(default_factory=list)  # question ids published


def waiting_stage(job: Job) -> str | None:
    """The message a waiting job needs, or None if it needs none now."""
    if job.state == jobs.QUEUED:
        return PREPARE
    if job.state == jobs.PREPARED:
        return INFER
    if job.state == jobs.INFERRING and job.result is not None:
        return REPORT
    if job.state in (jobs.REPORTING, jobs.DELIVERING):
        return REPORT
    return None


class Reconciler:
    """Runs the sweeps; ``queue_depth(name)`` tells how many messages wait in a queue."""

    def __init__(self, db: Database, settings: Settings, publish: Publishers,
                 queue_depth: Callable[[str], int | None] | None = None) -> None:
        self.db, self.settings, self.publish = db, settings, publish
        self.queue_depth = queue_depth
        self._last_lost_check = 0.0
        self._addendum_sent: dict[int, float] = {}  # question id -> last "wanted" message

    def run(self, force: bool = False) -> Sweep:
        """One pass; ``force`` republishes every waiting job (the queue was emptied)."""
        sweep = Sweep()
        self._takeovers(sweep)
        self._due(sweep)
        self._addenda(sweep)
        interval = min(5.0, self.settings.requeue_seconds / 4)
        if force or time.monotonic() - self._last_lost_check >= interval:
            self._last_lost_check = time.monotonic()
            self._lost(sweep, force)
            self._lost_questions(sweep, force)
        return sweep

    def _send(self, job: Job, stage: str) -> None:
        self.publish.of(stage)(job.id, job.version)
        with self.db.session() as s:  # so the lost-message sweep does not send it again
            s.execute(update(Job).where(Job.id == job.id).values(enqueued_at=now()))
            s.commit()

    def _takeovers(self, sweep: Sweep) -> None:
        settings = self.settings
        alive = live_names(self.db, settings.liveness_timeout_seconds)
        backstop = now() - settings.stage_timeout_seconds
        with self.db.session() as s:
            held = s.scalars(select(Job).where(Job.holder != "", Job.state.in_(jobs.ACTIVE))
                             ).all()
        for job in held:
            dead = job.holder not in alive
            if not dead and job.held_since >= backstop:
                continue
            why = (f"holder {job.holder} stopped answering" if dead else
                   f"stage held over {settings.stage_timeout_seconds:.0f} s by {job.holder}")
            with self.db.session() as s:
                if job.attempts + 1 > MAX_TAKEOVERS:
                    if jobs.fail(s, job.id, job.version, job.holder,
                                 f"taken over {MAX_TAKEOVERS} times; last: {why}"):
                        sweep.failed.append(job.id)
                    continue
                to = jobs.resume_state(job.state, job.result is not None)
                if not jobs.requeue(s, job.id, job.version, (job.holder,), (job.state,), to,
                                    f"taken over: {why}", count_attempt=True):
                    continue  # moved on since we looked
                fresh = s.get(Job, job.id)
            assert fresh is not None
            stage = waiting_stage(fresh)
            if stage is not None:
                self._send(fresh, stage)
            sweep.taken_over.append(job.id)
            log.warning("job %d v%d taken over (%s); back to %s", job.id, job.version, why, to)

    def _due(self, sweep: Sweep) -> None:
        t = now()
        with self.db.session() as s:
            due = s.scalars(select(Job).where(
                Job.holder == "", Job.state.in_(jobs.ACTIVE), Job.next_attempt_at > 0,
                Job.next_attempt_at <= t)).all()
        for job in due:
            stage = waiting_stage(job)
            if stage is None:
                continue
            if stage == INFER:  # the claim checks the time itself; keep it for that
                self._send(job, stage)
            else:
                with self.db.session() as s:
                    row = s.get(Job, job.id)
                    if row is None or row.holder or row.next_attempt_at != job.next_attempt_at:
                        continue
                    row.next_attempt_at = 0.0
                    s.commit()
                self._send(job, stage)
            sweep.due.append(job.id)

    def _addenda(self, sweep: Sweep) -> None:
        if self.publish.addendum is None:
            return
        alive = live_names(self.db, self.settings.liveness_timeout_seconds)
        for pending in deliveries.addenda_to_send(self.db, alive, self.settings.requeue_seconds):
            self.publish.addendum(pending.question_id)
            sweep.addenda.append(pending.question_id)
        # wanted but never filed (its message lost, or filing met a transient error): one
        # message per requeue interval until it is filed
        cutoff = now() - self.settings.requeue_seconds
        with self.db.session() as s:
            wanted = s.scalars(select(Question.id).where(
                Question.addendum == "wanted", Question.state == questions.ANSWERED,
                Question.answered_at < cutoff).limit(100)).all()
        for qid in wanted:
            if self._addendum_sent.get(qid, 0.0) < cutoff:
                self._addendum_sent[qid] = now()
                self.publish.addendum(qid)
                sweep.addenda.append(qid)

    def _lost(self, sweep: Sweep, force: bool) -> None:
        cutoff = now() - self.settings.requeue_seconds
        with self.db.session() as s:
            query = select(Job).where(Job.holder == "", Job.state.in_(jobs.ACTIVE),
                                      or_(Job.next_attempt_at == 0,
                                          Job.next_attempt_at <= now()))
            if not force:
                query = query.where(Job.enqueued_at < cutoff)
            waiting = s.scalars(query.order_by(Job.priority, Job.created_at).limit(1000)).all()
        empty: dict[str, bool] = {}
        for job in waiting:
            stage = waiting_stage(job)
            if stage is None:
                continue
            queue = QUEUE_OF[stage]
            if not force:
                if queue not in empty:
                    depth = self.queue_depth(queue) if self.queue_depth else None
                    empty[queue] = depth == 0  # unknown (broker down): wait for it
                if not empty[queue]:
                    continue  # messages are waiting there: the job's is most likely among them
            self._send(job, stage)
            sweep.republished.append(job.id)
        if sweep.republished and not force:
            log.warning("republished %d waiting job(s) whose messages were lost",
                        len(sweep.republished))

    def _lost_questions(self, sweep: Sweep, force: bool) -> None:
        """One wake-up when questions have been open past ``requeue_seconds`` (waiting, or
        held by a worker that may have died: the woken worker releases those) and no
        message waits on the ``gpu`` queue to answer them."""
        if self.publish.question is None:
            return
        cutoff = now() - self.settings.requeue_seconds
        with self.db.session() as s:
            query = select(Question.id).where(
                Question.state.in_((questions.WAITING, questions.ANSWERING)))
            if not force:
                query = query.where(Question.asked_at < cutoff)
            stale = s.scalar(query.limit(1))
        if stale is None:
            return
        if not force and (self.queue_depth(QUEUE_OF[INFER]) if self.queue_depth else None) != 0:
            return  # messages wait there (or the broker is down): they answer questions first
        self.publish.question(0)
        sweep.questions_woken = True
        if not force:
            log.warning("woke a GPU worker for follow-up questions open past %.0f s",
                        self.settings.requeue_seconds)
