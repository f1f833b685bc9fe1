"""The JSON API (``/api/...``) and its OpenAPI schema, all behind the token.

Each route is a thin reading of ``worker.ops.overview`` (the same queries serve the
dashboard and ``cxr-gateway status``), so what the API and the CLI say cannot drift.
Answers carry UIDs, states and reasons, never patient data.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from worker.ops import overview
from worker.ops.api import blinding
from worker.ops.api.auth import permit, require_token
from worker.ops.api.state import State, found
from worker.store import jobs, roles
from worker.store.db import Job

router = APIRouter(dependencies=[Depends(require_token)])

Limit = Annotated[int, Query(ge=1, le=1000)]
Offset = Annotated[int, Query(ge=0)]


def _time(value: str | None) -> float | None:
    """An ISO 8601 time (or date) from a query, as epoch seconds."""
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise HTTPException(422, "since/until: not an ISO 8601 time") from None


def _job(session: Session, job_id: int) -> Job:
    """The job, or the 404 that names it."""
    job: Job = found(session.get(Job, job_id), f"job {job_id}")
    return job


@router.get("/openapi.json", include_in_schema=False)
def openapi(request: Request) -> dict[str, Any]:
    """The schema, behind the token like the routes it describes."""
    return request.app.openapi()


@router.get("/api/overview", tags=["dashboard"], dependencies=[blinding.LISTED])
def get_overview(state: State) -> dict[str, Any]:
    """Counts by state, queue depth, throughput, p50/p95 per stage, recent jobs,
    failures, skipped studies and workers."""
    return overview.overview(state.db, state.queue_depth,
                             state.settings.liveness_timeout_seconds)


@router.get("/api/jobs", tags=["jobs"], dependencies=[blinding.LISTED])
def get_jobs(state: State,
             job_state: Annotated[str | None, Query(alias="state",
                                                    description="job state")] = None,
             since: Annotated[str | None, Query(description="created at or after "
                                                "(ISO 8601)")] = None,
             until: Annotated[str | None, Query(description="created before")] = None,
             calling_ae: Annotated[str | None, Query(description="sender's AE")] = None,
             limit: Limit = 100, offset: Offset = 0) -> list[dict[str, Any]]:
    """Jobs, newest first."""
    with state.db.session() as session:
        return overview.list_jobs(session, job_state, _time(since), _time(until),
                                  calling_ae, limit, offset)


@router.get("/api/jobs/{job_id}", tags=["jobs"], dependencies=[blinding.JOB])
def get_job(state: State, job_id: int) -> dict[str, Any]:
    """One job: result, deliveries and its timeline."""
    with state.db.session() as session:
        job = _job(session, job_id)
        summary = jobs.job_summary(session, job)
        result = job.result
    parsed = json.loads(result) if result else {}
    summary["reasoning"] = parsed.get("reasoning", "")
    summary["answer"] = parsed.get("answer")
    summary["report_text"] = parsed.get("report_text", "")
    summary["report_sections"] = parsed.get("report_sections", [])
    return summary


@router.get("/api/jobs/{job_id}/preview.png", tags=["jobs"], dependencies=[blinding.JOB])
def get_preview(state: State, job_id: int) -> Response:
    """The image the model was given."""
    with state.db.session() as session:
        png = _job(session, job_id).model_input
    if not png:
        raise HTTPException(404, f"job {job_id} has no model input yet")
    return Response(png, media_type="image/png")


@router.post("/api/jobs/{job_id}/retry", tags=["jobs"], dependencies=[permit(roles.RETRY)])
def retry_job(state: State, job_id: int) -> dict[str, Any]:
    """Put a failed job back in the queue."""
    with state.db.session() as session:
        _job(session, job_id)
        job = jobs.retry_failed(session, job_id)
    if job is None:
        raise HTTPException(409, f"job {job_id} is not failed")
    if state.broker is not None:
        state.broker.retry(job.id, job.version)
    return {"job_id": job_id, "state": job.state}


@router.get("/api/studies", tags=["studies"])
def get_studies(state: State,
                outcome: Annotated[str | None, Query(
                    pattern="^(admitted|skipped|open)$")] = None,
                limit: Limit = 100, offset: Offset = 0) -> list[dict[str, Any]]:
    """Studies, newest first."""
    with state.db.session() as session:
        return overview.list_studies(session, outcome, limit, offset)


@router.get("/api/studies/{study_uid}", tags=["studies"], dependencies=[blinding.LISTED])
def get_study(state: State, study_uid: str) -> dict[str, Any]:
    """A study: every instance and why it was or was not admitted, and its jobs."""
    with state.db.session() as session:
        return found(overview.study_detail(session, study_uid), f"study {study_uid}")


@router.get("/api/associations", tags=["associations"],
            dependencies=[permit(roles.ASSOCIATIONS)])
def get_associations(state: State, limit: Limit = 100,
                     since: Annotated[str | None, Query()] = None) -> list[dict[str, Any]]:
    """The association log, newest first."""
    with state.db.session() as session:
        return overview.list_associations(session, limit, _time(since))
