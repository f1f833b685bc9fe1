"""The job's stages as plain functions: prepare, infer, report, deliver.

Celery tasks (``worker.pipeline.tasks``) are thin wrappers around these, so each stage can be
tested, benchmarked and re-run without a broker.  Each stage claims its job first and
does nothing when the job is already past it or held by another live process: that is
what makes a redelivered message harmless.  A stage that has to wait (the next queue, a
retry) releases the job; the reconciler republishes it when it is due.

Where each part lives: the claims and every state change in ``claims``; the I/O of
each stage in its own module (``inference``, ``reporting``, ``delivery``); prepare, the
shortest, here.  This module is the one import for callers that run the stages.
"""

from __future__ import annotations

from dicom_gateway.imaging.conversion import ConversionError, convert_file
from worker.pipeline import claims
from worker.pipeline.claims import fail
from worker.pipeline.delivery import deliver
from worker.pipeline.inference import infer_batch, result_payload
from worker.pipeline.reporting import draft_from_result, report
from worker.runtime import Runtime

__all__ = ["deliver", "draft_from_result", "fail", "infer_batch", "prepare", "report",
           "result_payload"]


def prepare(rt: Runtime, job_id: int, version: int) -> bool:
    """Decode and convert the admitted image into the job; False when there is nothing to do.

    The model-ready PNG is stored with the job (a few hundred kB), so any GPU node can run
    it and a lost message costs nothing but a republish.
    """
    source = claims.claim_for_prepare(rt, job_id, version)
    if source is None:
        return False
    try:
        image = convert_file(source, rt.settings.conversion, rt.settings.max_source_pixels)
    except (ConversionError, OSError) as exc:
        fail(rt, job_id, version, f"conversion failed: {exc}")
        return False
    preview = rt.settings.previews_dir / f"job-{job_id}-v{version}.png"
    preview.parent.mkdir(parents=True, exist_ok=True)
    preview.write_bytes(image.png)  # for people and the dashboard; not part of the promise
    return claims.store_model_input(rt, job_id, version,
                                    "; ".join((image.conversion, *image.notes)), image.png)
