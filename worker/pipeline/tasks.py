"""Celery tasks: small messages (job id and version), the database holds the rest.

Each task is idempotent because the stage it wraps starts by claiming the job (see
``worker.pipeline.stages``).  The inference message is a wake-up call: the GPU worker batches
whatever jobs are ready when it arrives.  Retries are not Celery's: a stage that must
try again later records its next attempt in the database and the reconciler publishes
it when due, on any broker (ETA messages would sit unacknowledged in a Redis worker and
are lost by the embedded queue).
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from celery.signals import worker_init, worker_shutting_down
from kombu.exceptions import OperationalError as BrokerError
from sqlalchemy import select, update
from sqlalchemy.exc import OperationalError

from models.backend import BackendError
from models.study import serves_concurrently
from worker.pipeline import followups, inflight, stages
from worker.pipeline.celery_app import GPU_QUEUE, app
from worker.pipeline.reconciler import Publishers
from worker.runtime import Runtime, runtime
from worker.store.db import Job, now

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., None])

# The database or the broker unreachable: the job keeps its holder, whose heartbeat
# (or its absence) decides; nothing is failed for an outage.
TRANSIENT = (OperationalError, BrokerError, ConnectionError, TimeoutError)


def fails_job_on_error(stage: str) -> Callable[[F], F]:
    """An unexpected error ends the job as failed with its reason, instead of leaving it
    held until its holder is declared dead."""

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def run(job_id: int, version: int) -> None:
            try:
                fn(job_id, version)
            except TRANSIENT as exc:
                log.warning("job %s v%s: %s interrupted (%s); the reconciler resumes it",
                            job_id, version, stage, _kind(exc))
                _release_for_retry(job_id, version, f"{stage}: {type(exc).__name__}")
            except BackendError as exc:
                stages.fail(runtime(), job_id, version, f"{stage}: {exc}")
            except Exception as exc:
                log.exception("job %s v%s: %s failed", job_id, version, stage)
                stages.fail(runtime(), job_id, version,
                              f"{stage} failed: {type(exc).__name__}: {exc}")
        return run  # type: ignore[return-value]

    return wrap


def _kind(exc: BaseException) -> str:
    """The error's type, and its cause's (a message not sent: see ``send``); never its
    text, which may quote a broker URL."""
    cause = exc.__cause__
    return type(exc).__name__ + (f" from {type(cause).__name__}" if cause else "")


def _release_for_retry(job_id: int, version: int, error: str) -> None:
    """Best effort: let the job wait for a retry instead of staying held by a live process
    until the stage backstop (if the database is down too, the backstop it is)."""
    from worker.store import jobs

    rt = runtime()
    try:
        with rt.db.session() as s:
            job = s.get(Job, job_id)
            if job is None or job.holder != rt.worker_name:
                return
            jobs.requeue(s, job_id, version, (rt.worker_name,), (job.state,),
                         jobs.resume_state(job.state, job.result is not None),
                         f"interrupted: {error}", count_attempt=False,
                         next_attempt_at=now() + rt.settings.retry_backoff_seconds)
    except Exception as exc:  # noqa: BLE001 - nothing more to do from here
        log.warning("job %s v%s: cannot release for a retry (%s)", job_id, version, exc)


@app.task(name="cxr.prepare", ignore_result=True)
@fails_job_on_error("prepare")
def prepare(job_id: int, version: int) -> None:
    if stages.prepare(runtime(), job_id, version):
        enqueue_infer(job_id, version)


@app.task(name="cxr.infer", ignore_result=True)
@fails_job_on_error("inference")
def infer(job_id: int, version: int) -> None:
    rt = runtime()
    answer_questions(rt)  # a waiting reviewer first, then the study (live or batch)
    if serves_concurrently(rt.backend):  # a server (vLLM): the feeder keeps it full
        inflight.feeder(rt, report_soon).wake()  # and this worker is free for the rest
        return
    landed = stages.infer_batch(rt, job_id, version)
    for j, v in landed:
        enqueue_report(j, v)
    first_turns_landed(rt, landed)


def report_soon(landed: list[tuple[int, int]]) -> None:
    """Publish reports while other studies are still in flight (the engine feeder's
    thread): a broker hiccup must not break the feeder, and the lost-message sweep
    publishes them again anyway.  Questions that waited for these studies get a wake-up
    on the gpu queue instead of an answer here, so a follow-up's generation never holds
    up the feeder."""
    rt = runtime()
    try:
        _publish_all(report, landed)
    except TRANSIENT as exc:
        log.warning("%d report(s) not published (%s); the reconciler will", len(landed),
                    type(exc).__name__)
    from worker.store import conversations

    try:
        with rt.db.session() as s:
            conversations.record_for_jobs(s, [j for j, _ in landed])
        if followups.still_waiting(rt):
            enqueue_question(0)
    except TRANSIENT as exc:  # the turns are written again on first read; questions wait
        log.warning("conversation of %d job(s) not recorded yet (%s)", len(landed),
                    type(exc).__name__)


def first_turns_landed(rt: Runtime, landed: list[tuple[int, int]]) -> None:
    """Keep the conversation of the studies whose results just landed, and answer any
    question that waited for them (and any other waiting: a reviewer is live traffic)."""
    if not landed:
        return
    from worker.store import conversations

    try:
        with rt.db.session() as s:
            conversations.record_for_jobs(s, [j for j, _ in landed])
        answer_questions(rt)
    except TRANSIENT as exc:  # the turns are written again on first read; questions wait
        log.warning("conversation of %d job(s) not recorded yet (%s)", len(landed),
                    type(exc).__name__)


def answer_questions(rt: Runtime) -> None:
    """Answer waiting follow-up questions (one read when there are none), and publish
    the addendum SRs asked for with them; a failure here never costs the study its turn."""
    try:
        answered = followups.answer_waiting(rt)
        for qid in followups.addenda_wanted(rt, answered):
            enqueue_addendum(qid)
        if len(answered) >= followups.share(rt) and followups.still_waiting(rt):
            enqueue_question(0)  # more wait: their own message, behind the studies queued
    except TRANSIENT as exc:
        log.warning("follow-up questions wait (%s)", type(exc).__name__)
    except Exception:  # noqa: BLE001 - the study's inference must still run
        log.exception("answering follow-up questions failed")


@app.task(name="cxr.followup", ignore_result=True)
def followup(question_id: int = 0) -> None:
    """A reviewer asked (question ``question_id``) or a study a question waited on got
    its first turns: answer every waiting question now (on the ``gpu`` queue)."""
    answer_questions(runtime())


@app.task(name="cxr.addendum", ignore_result=True)
def addendum(question_id: int) -> None:
    """Write a question's thread as an addendum SR and deliver it (``cpu`` queue)."""
    from worker.pipeline import addenda

    try:
        addenda.write_and_send(runtime(), question_id)
    except TRANSIENT as exc:
        log.warning("question %d: addendum SR waits (%s); the reconciler sends it again",
                    question_id,
                    type(exc).__name__)


def enqueue_question(question_id: int) -> None:
    """Wake a GPU worker for a question, at live priority (ahead of batch work)."""
    send(followup, (question_id,), priority=0, queue=GPU_QUEUE)


def enqueue_addendum(question_id: int) -> None:
    send(addendum, (question_id,), priority=0, queue="cpu")


@worker_init.connect(weak=False)
def _wake_for_waiting_questions(**_kw: Any) -> None:
    """A worker starting (serve after a restart, which empties the embedded queue; a GPU
    worker after a Redis restart): questions still waiting get a wake-up, so none waits
    for the next study to arrive.  A duplicate wake-up answers nothing twice."""
    from worker.store import questions

    try:
        rt = runtime()
        with rt.db.session() as s:
            waiting, answering = questions.open_questions(s)
        if waiting or answering:
            enqueue_question(0)
    except RuntimeError:  # not configured: nothing runs here
        return
    except Exception as exc:  # noqa: BLE001 - never stop a worker from starting
        log.warning("waiting questions not woken at start (%s)", type(exc).__name__)


@worker_shutting_down.connect(weak=False)
def _stop_claiming(**_kw: Any) -> None:
    """SIGTERM to a worker: take no new job; what is in flight finishes within the grace."""
    with contextlib.suppress(RuntimeError):  # not configured: nothing runs here
        runtime().stopping.set()


@app.task(name="cxr.report", ignore_result=True)
@fails_job_on_error("report")
def report(job_id: int, version: int) -> None:
    rt = runtime()
    stages.report(rt, job_id, version)
    stages.deliver(rt, job_id, version)


def send(task: Any, args: tuple[Any, ...], **options: Any) -> None:
    """Publish one message; whatever keeps it from the broker is a broker error.

    kombu wraps its transports' connection errors in ``OperationalError``, but a Redis
    connection lost under one publisher while another thread reconnects can surface as
    something else: kombu 5.7's Redis ``Channel._connparams`` reads ``self.connection``
    of a channel closed meanwhile and raises ``AttributeError: 'NoneType' object has no
    attribute 'client'`` (a Redis-restart test hit it under load; the same trace is
    reported upstream, celery/kombu#83 and later).  Either way the message was not sent
    and the job keeps its state: callers treat it as an outage (TRANSIENT), and the
    reconciler's lost-message sweep publishes it again.  It is never a reason to fail a
    study.
    """
    try:
        task.apply_async(args, **options)
    except BrokerError:
        raise
    except Exception as exc:  # noqa: BLE001 - see above: not sent means "broker trouble"
        raise BrokerError(f"{task.name} not published: {type(exc).__name__}: {exc}") from exc


def _publish(task: Any, job_id: int, version: int) -> None:
    _publish_all(task, [(job_id, version)])


def _publish_all(task: Any, pairs: list[tuple[int, int]]) -> None:
    """Send each message at its job's priority and note when, for the lost-message sweep
    (one read and one write for all of them: the in-flight loop publishes many at once)."""
    db = runtime().db
    ids = [job_id for job_id, _ in pairs]
    with db.session() as s:
        priority = dict(s.execute(select(Job.id, Job.priority).where(Job.id.in_(ids))).all())
    for job_id, version in pairs:
        send(task, (job_id, version), priority=priority.get(job_id, 0))
    with db.session() as s:
        s.execute(update(Job).where(Job.id.in_(ids)).values(enqueued_at=now()))
        s.commit()


def enqueue_prepare(job_id: int, version: int) -> None:
    _publish(prepare, job_id, version)


def enqueue_infer(job_id: int, version: int) -> None:
    _publish(infer, job_id, version)


def enqueue_report(job_id: int, version: int) -> None:
    _publish(report, job_id, version)


PUBLISHERS = Publishers(prepare=enqueue_prepare, infer=enqueue_infer, report=enqueue_report,
                        question=enqueue_question, addendum=enqueue_addendum)
