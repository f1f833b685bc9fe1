"""Reviewer verdicts and agreement so far: the routes of the radiologist review (issue 25),
behind the token like the rest of ``/api``.

A verdict is recorded under the caller's name (``auth.caller``: ``operator`` or a named
token's name), never a name the request body claims, so the record says who judged.
The rules of a verdict (a label not named is agreed with; one label named two ways is
refused) are ``worker.store.reviews``'s, shared with ``cxr-gateway review``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, Field
from sqlalchemy import select

from models.labels import CHEXPERT_LABELS
from worker.ops.api import blinding
from worker.ops.api.auth import caller, permit, require_token
from worker.ops.api.state import State, found
from worker.store import reviews, roles
from worker.store.db import BatchRun, Job

router = APIRouter(dependencies=[Depends(require_token)])


class VerdictIn(BaseModel):
    """What a reviewer says about one job; every field may be left out (all agreed)."""

    verdicts: dict[str, str] = Field(default_factory=dict, description=(
        "label -> agree | disagree | not_assessable; a label left out is agreed with"))
    add: list[str] = Field(default_factory=list, description="labels the reviewer sees")
    remove: list[str] = Field(default_factory=list,
                              description="labels the reviewer does not see")
    note: str = Field("", max_length=4000, description="free text (no patient data)")


def _job(state: State, job_id: int) -> Job:
    with state.db.session() as session:
        job: Job = found(session.get(Job, job_id), f"job {job_id}")
    return job


def _run_id(state: State, name: str | None) -> int | None:
    if not name:
        return None
    with state.db.session() as session:
        run = found(session.scalar(select(BatchRun).where(BatchRun.name == name)),
                    f"batch named {name!r}")
    return run.id


@router.get("/api/jobs/{job_id}/reviews", tags=["review"], dependencies=[blinding.JOB])
def get_reviews(state: State, job_id: int) -> dict[str, Any]:
    """The model's labels and every verdict on the job, newest first."""
    job = _job(state, job_id)
    with state.db.session() as session:
        recorded = reviews.of_job(session, job_id)
    try:
        called = reviews.model_labels(job)
    except reviews.ReviewError:
        called = []
    return {"job_id": job_id, "has_result": bool(job.result), "model_labels": called,
            "labels": list(CHEXPERT_LABELS), "reviews": recorded}


@router.post("/api/jobs/{job_id}/reviews", status_code=201, tags=["review"],
             dependencies=[permit(roles.REVIEW), blinding.JOB])
def post_review(request: Request, state: State, job_id: int,
                body: VerdictIn) -> dict[str, Any]:
    """Record the caller's verdict on a job with a model result (409 before it has one;
    422 for a label or verdict that is not one, or a label named two ways)."""
    job = _job(state, job_id)
    try:
        decided = reviews.decide(reviews.model_labels(job), body.verdicts, body.add,
                                 body.remove)
    except reviews.ReviewError as exc:
        code = 409 if not job.result else 422
        raise HTTPException(code, str(exc)) from None
    with state.db.session() as session:
        return reviews.record(session, job, caller(request, state), decided, body.note)


@router.get("/api/reviews/agreement", tags=["review"], dependencies=[blinding.LISTED])
def get_agreement(state: State, batch: Annotated[str | None, Query(
        description="only this batch run's studies")] = None) -> dict[str, Any]:
    """Per label, how often reviewers agreed with the model so far (current verdicts)."""
    run_id = _run_id(state, batch)
    with state.db.session() as session:
        return reviews.agreement(session, run_id)
