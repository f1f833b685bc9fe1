"""Celery tasks: small messages (ids and, for inference, the small model-ready image).

Each task is idempotent because the stage it wraps starts with a guarded state
transition (see ``worker.pipeline``).
"""

from __future__ import annotations

from typing import Any

from worker import pipeline
from worker.celery_app import app
from worker.runtime import runtime

MAX_DELIVERY_RETRIES = 8


@app.task(name="cxr.prepare", ignore_result=True)
def prepare(job_id: int, version: int) -> None:
    prepared = pipeline.prepare(runtime(), job_id, version)
    if prepared is not None:
        infer.apply_async((job_id, version, prepared.image_b64))


@app.task(name="cxr.infer", ignore_result=True)
def infer(job_id: int, version: int, image_b64: str) -> None:
    if pipeline.infer(runtime(), pipeline.Prepared(job_id, version, image_b64)):
        report.apply_async((job_id, version))


@app.task(name="cxr.report", bind=True, ignore_result=True, max_retries=MAX_DELIVERY_RETRIES)
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
