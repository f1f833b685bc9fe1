"""The inference stage: fill a batch from the database, run the model, store the results.

The ``cxr.infer`` message only says "there is work": the batch is whatever is prepared
in the database when it arrives, so one generation serves several studies.  The claims
and writes are ``worker.pipeline.claims``'; the result's stored form (what the SR, the API
and predictions files read) is defined here, once, for the batch path and the in-flight
path (``worker.pipeline.inflight``) alike.
"""

from __future__ import annotations

import logging
import time
import uuid

from models.backend import Backend, BackendError, identity_fields
from models.study import StudyResult, run_studies
from worker.pipeline import claims
from worker.pipeline.claims import Pair
from worker.runtime import Runtime

log = logging.getLogger(__name__)

# (job, version), its result, the generation it came from, and that generation's size
Landed = tuple[Pair, StudyResult, str, int]


def result_payload(backend: Backend, result: StudyResult) -> dict[str, object]:
    """The job's stored result: everything the SR, the API and predictions files read."""
    parsed, report = result.parsed, result.parsed_report
    return {
        **identity_fields(backend.info),
        "prompt": result.prompt,
        "status": result.status,
        "answer_status": parsed.status,
        "labels": list(result.labels),
        "near_misses": parsed.near_misses,
        "unknown_labels": list(parsed.unknown),
        "format_ok": parsed.format_ok,
        "notes": list(parsed.notes),
        "findings_text": result.findings.text,
        "findings_tokens": result.findings.generated_tokens,
        "findings_hit_token_limit": parsed.hit_token_limit,
        "answer": parsed.answer,
        "reasoning": parsed.reasoning,
        "report_text": result.report.text if result.report else "",
        "report_tokens": result.report.generated_tokens if result.report else None,
        "report_truncated": bool(report and report.truncated),
        "report_reasoning": report.reasoning if report else "",
        "report_sections": [{"heading": sec.heading, "known": sec.known,
                             "items": list(sec.items)} for sec in report.sections]
        if report else [],
    }


def infer_batch(rt: Runtime, job_id: int, version: int) -> list[Pair]:
    """Run the model on this job plus up to ``gpu_batch_size - 1`` other ready jobs.

    Waits up to ``gpu_batch_wait_seconds`` for the batch to fill.  Returns the
    (job, version) pairs that now have a result.
    """
    runnable = model_inputs(rt, claim_batch(rt, job_id, version))
    if not runnable:
        return []
    try:
        results = run_studies(rt.backend, [image for _, _, image in runnable])
    except BackendError as exc:
        claims.retry_inference_later(rt, [(j, v) for j, v, _ in runnable], str(exc),
                                     exc.permanent)
        return []
    batch_id = uuid.uuid4().hex  # so the metrics count batches, not jobs
    done = store_results(rt, [((j, v), result, batch_id, len(runnable)) for (j, v, _), result
                              in zip(runnable, results, strict=True)])
    log.info("%s: batch of %d job(s) inferred", rt.worker_name, len(runnable))
    return done


def claim_batch(rt: Runtime, job_id: int, version: int) -> list[Pair]:
    """This job (if still waiting) and others prepared meanwhile, until the batch is full
    or ``gpu_batch_wait_seconds`` have passed."""
    settings = rt.settings
    batch: list[Pair] = []
    if claims.claim_for_inference(rt, job_id, version):
        batch.append((job_id, version))
    deadline = time.monotonic() + settings.gpu_batch_wait_seconds
    while True:
        batch += claims.claim_more(rt, settings.gpu_batch_size - len(batch))
        if len(batch) >= settings.gpu_batch_size or time.monotonic() >= deadline:
            return batch
        time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))


def model_inputs(rt: Runtime, claimed: list[Pair]) -> list[tuple[int, int, bytes]]:
    """The claimed jobs with their stored model input; one without any fails (prepare
    stores it, so its absence is a defect, not something a retry would mend)."""
    if not claimed:
        return []
    inputs = claims.stored_model_inputs(rt, claimed)
    runnable = []
    for j, v in claimed:
        image = inputs.get(j)
        if image:
            runnable.append((j, v, image))
        else:
            claims.fail(rt, j, v, "no model input stored for the job")
    return runnable


def store_results(rt: Runtime, landed: list[Landed]) -> list[Pair]:
    """Record each landed result with its generation and this worker, in one transaction;
    the jobs stored (see ``claims.store_payloads``)."""
    payloads = []
    for pair, result, batch_id, batch_size in landed:
        payload = result_payload(rt.backend, result)
        payload.update(batch_id=batch_id, batch_size=batch_size, worker=rt.worker_name)
        payloads.append((pair, payload))
    return claims.store_payloads(rt, payloads)
