"""Follow-up questions in the database (issue 25): who asked what, and their work queue.

A question is a row in ``questions``: who asked (a name or token identity) and when;
``waiting`` until a GPU worker takes it (``answering``), then ``answered`` with the reply
read like every turn, or ``failed`` with the reason.  One question per job is answered at
a time, oldest first, so each is asked after every earlier answer of its thread.  How a
question is sent to the model (its route) is the model's policy (``models.followup``),
decided where the question is asked (``worker.pipeline.followups.ask``) and stored here
as a plain value.  The conversation the questions extend is ``worker.store.conversations``'.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from worker.store import jobs
from worker.store.conversations import image_ref, turns
from worker.store.db import Job, Question, now

WAITING = "waiting"
ANSWERING = "answering"
ANSWERED = "answered"
FAILED = "failed"
QUESTION_STATES = (WAITING, ANSWERING, ANSWERED, FAILED)
MAX_QUESTION_CHARS = 4000


class QuestionRefused(ValueError):
    """A question that cannot be asked (empty, too long, no such job); the text says why."""


class QuotaExceeded(QuestionRefused):
    """Too many questions open on the job, or asked by this caller this hour: ask again
    after ``retry_after`` seconds; ``limit`` is the setting's value."""

    def __init__(self, message: str, limit: int, retry_after: int) -> None:
        super().__init__(message)
        self.limit, self.retry_after = limit, retry_after


def check_quotas(session: Session, job_id: int, asked_by: str, per_job: int,
                 per_hour: int) -> None:
    """QuotaExceeded when the job has ``per_job`` questions open, or ``asked_by`` asked
    ``per_hour`` in the last hour (one token holder cannot fill the GPU queue)."""
    open_now = session.scalar(select(func.count()).select_from(Question).where(
        Question.job_id == job_id, Question.state.in_((WAITING, ANSWERING)))) or 0
    if open_now >= per_job:
        raise QuotaExceeded(f"job {job_id} has {open_now} questions open (at most {per_job}, "
                            "CXR_MAX_OPEN_QUESTIONS_PER_JOB): ask once one is answered",
                            per_job, 30)
    since = now() - 3600
    recent = list(session.scalars(select(Question.asked_at).where(
        Question.asked_by == asked_by[:128], Question.asked_at >= since)
        .order_by(Question.asked_at).limit(per_hour)))
    if len(recent) >= per_hour:
        wait = max(1, int(recent[0] + 3600 - now()) + 1)
        raise QuotaExceeded(f"{asked_by} asked {per_hour} questions in the last hour (at most "
                            f"{per_hour}, CXR_QUESTIONS_PER_REVIEWER_PER_HOUR)", per_hour, wait)


def checked_text(text: str) -> str:
    """The question as it will be stored; QuestionRefused when it cannot be asked."""
    text = text.strip()
    if not text:
        raise QuestionRefused("the question is empty")
    if len(text) > MAX_QUESTION_CHARS:
        raise QuestionRefused(f"the question is longer than {MAX_QUESTION_CHARS} characters")
    return text


def job_to_ask(session: Session, job_id: int) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise QuestionRefused(f"no job {job_id}")
    return job


def record(session: Session, job: Job, text: str, asked_by: str, route: str,
           to_pacs: bool = False) -> Question:
    """Record a question on a job (waiting), sent to the model by ``route``."""
    q = Question(job_id=job.id, text=checked_text(text), asked_by=asked_by[:128],
                 asked_at=now(), state=WAITING, route=route,
                 addendum="wanted" if to_pacs else "")
    session.add(q)
    session.commit()
    return q


def want_addendum(session: Session, question_id: int) -> Question | None:
    """Ask for a question's thread as an addendum SR (again, if an earlier one failed)."""
    q = session.get(Question, question_id)
    if q is None:
        return None
    if q.addendum != "written":
        q.addendum = "wanted"
        q.addendum_detail = ""
        session.commit()
    return q


def answerable(job: Job) -> bool:
    """The job has its first turns' result and the image they were asked about."""
    return job.result is not None and bool(job.model_input)


def hopeless(job: Job) -> str:
    """Why a question on this job can never be answered ("" while it may still be)."""
    if answerable(job):
        return ""
    if job.state in jobs.TERMINAL:
        return f"the job is {job.state} without a result ({job.reason or 'no reason'}): " \
               "there is no reading to ask about"
    return ""


# -- reading -----------------------------------------------------------------------------

def question_view(q: Question) -> dict[str, Any]:
    """A question as the API, the CLI and the dashboard show it (no patient data)."""
    return {
        "question_id": q.id, "job_id": q.job_id, "question": q.text, "asked_by": q.asked_by,
        "asked_at": jobs.iso(q.asked_at), "state": q.state, "route": q.route,
        "status": q.status, "answer": q.answer, "reasoning": q.reasoning,
        "reply_text": q.reply_text, "answered_at": jobs.iso(q.answered_at),
        "generated_tokens": q.generated_tokens, "reused_report_turn": q.reused_turn,
        "error": q.error, "worker": q.worker, "job_version": q.job_version,
        "addendum": {"state": q.addendum, "sop_instance_uid": q.addendum_sop_instance_uid,
                     "detail": q.addendum_detail} if q.addendum else None,
        "waiting_for": None,  # filled in by ``thread``, which knows the job
    }


def thread(session: Session, job: Job) -> dict[str, Any]:
    """The whole conversation of a job and its questions, oldest first."""
    rows = turns(session, job)
    questions = session.scalars(select(Question).where(Question.job_id == job.id)
                                .order_by(Question.asked_at, Question.id)).all()
    views = []
    for q in questions:
        view = question_view(q)
        if q.state == WAITING:
            view["waiting_for"] = "a GPU worker" if answerable(job) else \
                (hopeless(job) or "the job's first turns")
        views.append(view)
    return {
        "job_id": job.id, "version": job.version, "state": job.state,
        "image": rows[0].image_ref if rows else image_ref(job.model_input),
        "turns": [{"seq": r.seq, "role": r.role, "kind": r.kind, "text": r.text,
                   "image": r.image_ref or None, "question_id": r.question_id,
                   "generated_tokens": r.generated_tokens, "at": jobs.iso(r.created_at)}
                  for r in rows],
        "questions": views,
    }


def counts(session: Session) -> dict[str, int]:
    """Questions by state (for the metrics)."""
    found = dict(session.execute(select(Question.state, func.count())
                                 .group_by(Question.state)).all())
    return {state: int(found.get(state, 0)) for state in QUESTION_STATES}


# -- the GPU worker's side -------------------------------------------------------------

def release_stale(session: Session, live: set[str]) -> int:
    """Questions held by a process that is no longer alive go back to waiting."""
    res = session.execute(update(Question).where(
        Question.state == ANSWERING, Question.holder.not_in(live or {""}))
        .values(state=WAITING, holder="", held_since=0.0))
    session.commit()
    return int(res.rowcount or 0)  # type: ignore[attr-defined]


def busy_jobs(session: Session) -> set[int]:
    """Jobs with a question being answered (read once per claim; the database's index
    refuses a second one all the same, should another worker claim in between)."""
    return set(session.scalars(select(Question.job_id).where(Question.state == ANSWERING)))


def claim_questions(session: Session, holder: str, limit: int) -> list[int]:
    """Take up to ``limit`` waiting questions, oldest first, at most one per job and none
    for a job with a question being answered; a question whose job can never give an
    answer fails with the reason.  The ids taken."""
    busy = busy_jobs(session)
    taken: list[int] = []
    seen: set[int] = set()
    waiting = session.scalars(select(Question).where(Question.state == WAITING)
                              .order_by(Question.asked_at, Question.id).limit(500)).all()
    for q in waiting:
        if len(taken) >= limit:
            break
        if q.job_id in busy or q.job_id in seen:
            continue
        seen.add(q.job_id)
        job = session.get(Job, q.job_id)
        why = "the job is gone" if job is None else hopeless(job)
        if why:
            session.execute(update(Question).where(Question.id == q.id,
                                                   Question.state == WAITING)
                            .values(state=FAILED, error=why, answered_at=now()))
            session.commit()
            continue
        if job is None or not answerable(job):
            continue  # its first turns are still running: it waits for them
        try:
            res = session.execute(update(Question).where(Question.id == q.id,
                                                         Question.state == WAITING)
                                  .values(state=ANSWERING, holder=holder, held_since=now()))
            session.commit()
        except IntegrityError:  # another worker took a question of this job meanwhile:
            session.rollback()  # the database holds one answering per job (0012)
            continue
        if res.rowcount == 1:  # type: ignore[attr-defined]
            taken.append(q.id)
    return taken


MAX_ATTEMPTS = 3  # failed tries to answer one question, before it fails for good


def put_back(session: Session, question_id: int, holder: str, error: str,
             permanent: bool, counted: bool = False) -> None:
    """A failure while answering: the question waits again (transient) or fails
    (permanent).  ``counted``: a try that counts against ``MAX_ATTEMPTS`` (an error of
    ours or the worker's: an exception, an out-of-memory), so that such a question is
    retried a bounded number of times, then failed with the reason, never left held."""
    q = session.get(Question, question_id)
    if q is None or q.holder != holder or q.state != ANSWERING:
        return
    attempts = q.attempts + (1 if counted else 0)
    final = permanent or attempts >= MAX_ATTEMPTS
    if final and counted and not permanent:
        error = f"{error} (tried {attempts} times)"
    session.execute(update(Question).where(Question.id == question_id,
                                           Question.holder == holder,
                                           Question.state == ANSWERING)
                    .values(state=FAILED if final else WAITING, holder="",
                            held_since=0.0, error=error, attempts=attempts,
                            answered_at=now() if final else None))
    session.commit()


def waiting_on(session: Session, job_ids: list[int]) -> int:
    """How many questions wait on these jobs (whose results just landed)."""
    if not job_ids:
        return 0
    return int(session.scalar(select(func.count()).select_from(Question).where(
        Question.job_id.in_(job_ids), Question.state == WAITING)) or 0)


def open_questions(session: Session) -> tuple[int, int]:
    """(waiting, answering) question counts, in one read."""
    found = dict(session.execute(select(Question.state, func.count()).where(
        Question.state.in_((WAITING, ANSWERING))).group_by(Question.state)).all())
    return int(found.get(WAITING, 0)), int(found.get(ANSWERING, 0))

