"""Celery tasks: small messages (ids and, for inference, the small model-ready image).

Each task is idempotent because the stage it wraps starts with a guarded state
transition (see ``worker.pipeline``).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from celery.exceptions import Retry
from sqlalchemy.exc import OperationalError

from models.backend import BackendError
from worker import pipeline
from worker.celery_app import app
from worker.runtime import runtime

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., None])


def fails_job_on_error(stage: str, bound: bool = False) -> Callable[[F], F]:
    """An unexpected error ends the job as failed with its reason, instead of leaving it
    stuck until its lease expires.  Errors a later attempt may fix (database unreachable,
    a transient backend error) propagate: the lease and the reconciler retry them."""

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> None:
            job_id, version = args[1:3] if bound else args[0:2]
            try:
                fn(*args, **kwargs)
            except (Retry, OperationalError):
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

MAX_DELIVERY_RETRIES = 8


@app.task(name="cxr.prepare", ignore_result=True)
@fails_job_on_error("prepare")
def prepare(job_id: int, version: int) -> None:
    prepared = pipeline.prepare(runtime(), job_id, version)
    if prepared is not None:
        infer.apply_async((job_id, version, prepared.image_b64))


@app.task(name="cxr.infer", ignore_result=True)
@fails_job_on_error("inference")
def infer(job_id: int, version: int, image_b64: str) -> None:
    if pipeline.infer(runtime(), pipeline.Prepared(job_id, version, image_b64)):
        report.apply_async((job_id, version))


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
    prepare.apply_async((job_id, version))


def enqueue_report(job_id: int, version: int) -> None:
    report.apply_async((job_id, version))
