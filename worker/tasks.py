"""Celery tasks: small messages (job id and version), the database holds the rest.

Each task is idempotent because the stage it wraps starts with a guarded state
transition (see ``worker.pipeline``).  The inference message is a wake-up call: the GPU
worker batches whatever jobs are ready when it arrives.
"""

from __future__ import annotations

import functools
import logging
import socket
from collections.abc import Callable
from typing import Any, TypeVar

from celery.exceptions import Retry
from kombu.exceptions import OperationalError as BrokerError
from sqlalchemy.exc import OperationalError

from models.backend import BackendError
from worker import pipeline
from worker.celery_app import app
from worker.db import Job
from worker.runtime import runtime

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., None])

# A later attempt may succeed: the job keeps its state, its lease expires, the reconciler
# re-enqueues it.  (A broker outage while publishing the next stage lands here too.)
TRANSIENT = (Retry, OperationalError, BrokerError, ConnectionError, TimeoutError)

MAX_DELIVERY_RETRIES = 8
MAX_BACKEND_RETRIES = 5
WORKER_NAME = f"{socket.gethostname()}"


def fails_job_on_error(stage: str, bound: bool = False) -> Callable[[F], F]:
    """An unexpected error ends the job as failed with its reason, instead of leaving it
    stuck until its lease expires.  Errors a later attempt may fix (database or broker
    unreachable, a transient backend error, a Celery retry) propagate: retries and leases
    handle them."""

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> None:
            job_id, version = args[1:3] if bound else args[0:2]
            try:
                fn(*args, **kwargs)
            except TRANSIENT:
                raise
            except BackendError as exc:
                if not exc.permanent:
                    raise
                pipeline.fail(runtime(), job_id, version, f"{stage}: {exc}")
            except Exception as exc:
                log.exception("job %s v%s: %s failed", job_id, version, stage)
                pipeline.fail(runtime(), job_id, version,
                              f"{stage} failed: {type(exc).__name__}: {exc}")
        return run  # type: ignore[return-value]

    return wrap


def _priority(job_id: int) -> int:
    with runtime().db.session() as s:
        job = s.get(Job, job_id)
        return job.priority if job is not None else 0


@app.task(name="cxr.prepare", ignore_result=True)
@fails_job_on_error("prepare")
def prepare(job_id: int, version: int) -> None:
    if pipeline.prepare(runtime(), job_id, version):
        enqueue_infer(job_id, version)


@app.task(name="cxr.infer", bind=True, ignore_result=True, max_retries=MAX_BACKEND_RETRIES)
@fails_job_on_error("inference", bound=True)
def infer(self: Any, job_id: int, version: int) -> None:
    rt = runtime()
    try:
        done = pipeline.infer_batch(rt, job_id, version, str(self.request.hostname or WORKER_NAME))
    except BackendError as exc:
        if exc.permanent or self.request.retries >= self.max_retries:
            raise BackendError(str(exc), permanent=True) from exc
        raise self.retry(exc=exc, countdown=min(120, 2 ** (self.request.retries + 2))) from exc
    for j, v in done:
        enqueue_report(j, v)


@app.task(name="cxr.report", bind=True, ignore_result=True, max_retries=MAX_DELIVERY_RETRIES)
@fails_job_on_error("report", bound=True)
def report(self: Any, job_id: int, version: int) -> None:
    rt = runtime()
    pipeline.report(rt, job_id, version)
    try:
        pipeline.deliver(rt, job_id, version)
    except pipeline.TransientDeliveryError as exc:
        if self.request.retries >= self.max_retries:
            pipeline.fail(rt, job_id, version, f"delivery failed after retries: {exc}")
            return
        raise self.retry(exc=exc, countdown=min(300, 2 ** (self.request.retries + 1))) from exc


def enqueue_prepare(job_id: int, version: int) -> None:
    prepare.apply_async((job_id, version), priority=_priority(job_id))


def enqueue_infer(job_id: int, version: int) -> None:
    infer.apply_async((job_id, version), priority=_priority(job_id))


def enqueue_report(job_id: int, version: int) -> None:
    report.apply_async((job_id, version), priority=_priority(job_id))
