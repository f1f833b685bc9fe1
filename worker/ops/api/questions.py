"""Follow-up questions over HTTP: ask one on a job, read its thread (issue 25).

``POST /api/jobs/{id}/questions`` records the question (who asked: ``auth.caller``, a
name or token identity, never patient data) and answers 202 with its id at once; a GPU
worker answers it ahead of batch work (``worker.pipeline.followups``).
``GET /api/jobs/{id}/questions`` is the thread: every turn of the study's conversation
verbatim and every question with its state, answer and reasoning.
``GET /api/questions/{qid}`` is one question (what ``cxr-gateway ask`` polls), and
``POST /api/questions/{qid}/addendum`` asks for its thread as an addendum SR.

All behind the token, like the rest of ``/api``.  The broker is reached through the
publishers ``create_app`` was given (``state.broker``); without them the question waits in
the database for the next GPU message (or worker start), which answers waiting questions
first, and an addendum for the reconciler.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Request
from fastapi.responses import JSONResponse, Response

from worker.ops.api import blinding
from worker.ops.api.auth import caller, calling, permit, refuse, require_token
from worker.ops.api.state import ApiState, State, found
from worker.pipeline import followups
from worker.store import questions, roles
from worker.store.db import Job, Question

log = logging.getLogger(__name__)
STATIC = Path(__file__).resolve().parent.parent / "static"

router = APIRouter(dependencies=[Depends(require_token)])


def publish(state: ApiState, what: str, question_id: int) -> None:
    """Publish a question's wake-up or addendum (``what``); best effort: the row is in the
    database, and the next GPU message or the reconciler finds it."""
    if state.broker is None:
        return
    try:
        getattr(state.broker, what)(question_id)
    except Exception as exc:  # noqa: BLE001 - the broker may be down; the row is kept
        log.warning("question %d: %s message not published (%s); it waits in the database",
                    question_id, what, type(exc).__name__)


@router.post("/api/jobs/{job_id}/questions", tags=["questions"], status_code=202,
             dependencies=[permit(roles.ASK), blinding.JOB])
def ask(request: Request, state: State, job_id: int,
        question: Annotated[str, Body(embed=True, description="the follow-up question")],
        to_pacs: Annotated[bool, Body(embed=True, description="also write the thread as "
                                      "an addendum SR, delivered like the first")] = False
        ) -> JSONResponse:
    """Ask the model a follow-up question about the job's study (answered later)."""
    who = caller(request, state) or "unknown"
    with state.db.session() as session:
        try:
            q = followups.ask(session, job_id, question, who, to_pacs, state.settings)
        except questions.QuotaExceeded as exc:
            return JSONResponse({"detail": str(exc), "limit": exc.limit}, status_code=429,
                                headers={"Retry-After": str(exc.retry_after)})
        except questions.QuestionRefused as exc:
            raise HTTPException(404 if str(exc).startswith("no job") else 422,
                                str(exc)) from None
        view = questions.question_view(q)
    publish(state, "question", view["question_id"])
    return JSONResponse(view, status_code=202,
                        headers={"Location": f"/api/questions/{view['question_id']}"})


@router.get("/api/jobs/{job_id}/questions", tags=["questions"], dependencies=[blinding.JOB])
def get_thread(state: State, job_id: int) -> dict[str, Any]:
    """The job's conversation (turns verbatim) and its questions, oldest first."""
    with state.db.session() as session:
        return questions.thread(session, found(session.get(Job, job_id), f"job {job_id}"))


@router.get("/api/questions/{question_id}", tags=["questions"],
            dependencies=[blinding.QUESTION])
def get_question(state: State, question_id: int) -> dict[str, Any]:
    """One question: its state and, once answered, the answer and reasoning."""
    with state.db.session() as session:
        return questions.question_view(
            found(session.get(Question, question_id), f"question {question_id}"))


@router.post("/api/questions/{question_id}/addendum", tags=["questions"], status_code=202,
             dependencies=[permit(roles.ADDENDUM), blinding.QUESTION])
def post_addendum(request: Request, state: State, question_id: int) -> dict[str, Any]:
    """Write the thread up to this question as an addendum SR and deliver it like the
    first SR (done once the question is answered).  A reviewer may ask this of their
    own questions; someone else's needs the operator's ``addendum-any``."""
    who = calling(request, state)
    with state.db.session() as session:
        asked = found(session.get(Question, question_id), f"question {question_id}")
        if who is not None and asked.asked_by != who.name and not who.may(roles.ADDENDUM_ANY):
            raise refuse(who, roles.ADDENDUM_ANY)
        q = found(questions.want_addendum(session, question_id), f"question {question_id}")
        view = questions.question_view(q)
    if view["state"] == questions.ANSWERED:
        publish(state, "addendum", question_id)
    return view


@router.get("/static/questions.js", include_in_schema=False)
def script() -> Response:
    """The dashboard's thread view and question box."""
    return Response((STATIC / "questions.js").read_text(), media_type="text/javascript")
