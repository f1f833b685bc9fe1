"""The follow-up stage: answer waiting questions on the GPU worker, ahead of batch work.

Every message on the ``gpu`` queue -- a ``cxr.followup`` wake-up published when a
question is asked or when the first turns it waited for land, and every ``cxr.infer``
message -- first answers the questions that wait (``answer_waiting``), then does its own
work.  So a reviewer's question never waits behind a batch backlog, whatever order the
broker keeps (the embedded queue is first in, first out), and a lost wake-up is made
good by the next GPU message.

A question is one more user turn after the job's stored conversation (the image in the
first turn only, every earlier turn verbatim, ``models.followup``), batched with the
other waiting questions in one backend call; the reply is parsed like every turn and
stored with the turns, so the next question is asked after it.  A report request reuses
the stored report turn (nothing is generated).  One question per job at a time.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from sqlalchemy.orm import Session

from models.backend import BackendError, ModelRequest
from models.followup import (
    FollowupReply,
    Route,
    followup_request,
    read_reply,
    reply_of,
    route,
)
from worker.runtime import Runtime
from worker.settings import Settings
from worker.store import conversations as conv
from worker.store import questions as qs
from worker.store.db import Job, Question, now
from worker.store.liveness import live_names

log = logging.getLogger(__name__)
MAX_ROUNDS = 100  # questions keep coming: let the task's own work have its turn too


@dataclass
class Prepared:
    """A claimed question with what to ask (or the stored report turn to reuse)."""

    question_id: int
    job_id: int
    job_version: int
    chosen: Route
    request: ModelRequest | None
    reused: tuple[int, str, int | None] | None = None  # (seq, text, tokens) of the report


def ask(session: Session, job_id: int, text: str, asked_by: str, to_pacs: bool = False,
        settings: Settings | None = None) -> Question:
    """Record a question on a job, with the route the model's policy gives it (a report
    request, a question about the image, an exact prompt: ``models.followup.route``);
    raises ``QuestionRefused`` with the reason (``QuotaExceeded`` past the settings'
    quotas, checked when ``settings`` is given: every caller from outside does)."""
    text = qs.checked_text(text)
    job = qs.job_to_ask(session, job_id)
    if settings is not None:
        qs.check_quotas(session, job_id, asked_by, settings.max_open_questions_per_job,
                        settings.questions_per_reviewer_per_hour)
    has_report = bool(job.result and json.loads(job.result).get("report_text"))
    return qs.record(session, job, text, asked_by, route(text, has_report).route, to_pacs)


def share(rt: Runtime) -> int:
    """How many questions one GPU message answers at most: ``followup_share`` of a batch
    (at least one), so that a flood of questions never starves study inference."""
    return max(1, int(rt.settings.followup_share * rt.settings.gpu_batch_size))


def answer_waiting(rt: Runtime) -> list[int]:
    """Answer questions that can be answered now, at most ``share`` of them (in rounds:
    one question per job each); their ids.  More may wait: ``still_waiting`` tells."""
    answered: list[int] = []
    with rt.db.session() as s:
        waiting, answering = qs.open_questions(s)
        if answering:  # held by a process that died meanwhile: back to waiting
            waiting += qs.release_stale(
                s, live_names(rt.db, rt.settings.liveness_timeout_seconds) | {rt.worker_name})
    if not waiting:
        return answered  # one read: what every GPU message costs when nobody asks
    budget = share(rt)
    for _ in range(MAX_ROUNDS):
        if rt.stopping.is_set() or len(answered) >= budget:
            break
        with rt.db.session() as s:
            claimed = qs.claim_questions(s, rt.worker_name, budget - len(answered))
        if not claimed:
            break
        try:
            done = answer(rt, claimed)
        except Exception as exc:  # noqa: BLE001 - whatever failed, the claims are released
            release(rt, claimed, exc)
            break
        answered += done
        if not done:  # the backend failed: the questions wait for the next message
            break
    return answered


def still_waiting(rt: Runtime) -> bool:
    with rt.db.session() as s:
        return qs.open_questions(s)[0] > 0


def release(rt: Runtime, question_ids: list[int], exc: BaseException) -> None:
    """After a failure that is not the backend's answer (out of memory, a database error,
    a bug): every question this process still holds waits again, counted, and fails with
    the reason once ``MAX_ATTEMPTS`` tries have failed.  Never left ``answering``."""
    why = f"follow-up failed: {type(exc).__name__}"
    log.warning("%d follow-up question(s) not answered (%s); released", len(question_ids),
                type(exc).__name__)
    with rt.db.session() as s:
        for qid in question_ids:
            qs.put_back(s, qid, rt.worker_name, why, permanent=False, counted=True)


def prepare(rt: Runtime, question_ids: list[int]) -> list[Prepared]:
    """Route each claimed question and build its request from the stored conversation."""
    out: list[Prepared] = []
    with rt.db.session() as s:
        for qid in question_ids:
            q = s.get(Question, qid)
            job = s.get(Job, q.job_id) if q is not None else None
            if q is None or job is None:
                continue
            rows = conv.turns(s, job)
            report = conv.report_turn(rows)
            try:
                chosen = route(q.text, report is not None)
                if chosen.reuse_report and report is not None:
                    out.append(Prepared(qid, job.id, job.version, chosen, None,
                                        (report.seq, report.text, report.generated_tokens)))
                    continue
                assert job.model_input is not None  # claim_questions checked it
                request = followup_request(job.model_input, conv.as_model_turns(rows),
                                           chosen.prompt, chosen.max_new_tokens)
            except ValueError as exc:
                qs.put_back(s, qid, rt.worker_name, f"cannot ask: {exc}", permanent=True)
                continue
            out.append(Prepared(qid, job.id, job.version, chosen, request))
    return out


def answer(rt: Runtime, question_ids: list[int]) -> list[int]:
    """One batch: the backend answers the questions that need a generation (one call),
    then every answer is stored.  The ids answered."""
    prepared = prepare(rt, question_ids)
    asking = [p for p in prepared if p.request is not None]
    replies: dict[int, FollowupReply] = {}
    is_mock = rt.backend.info.is_mock
    if asking:
        try:
            gens = rt.backend.generate([p.request for p in asking if p.request is not None])
        except BackendError as exc:
            with rt.db.session() as s:
                for p in asking:
                    qs.put_back(s, p.question_id, rt.worker_name, f"follow-up: {exc}",
                                  exc.permanent)
            log.warning("%d follow-up question(s) not answered: %s", len(asking), exc)
            asking = []
            gens = []
        for p, gen in zip(asking, gens, strict=True):
            replies[p.question_id] = reply_of(gen, p.chosen, is_mock)
    for p in prepared:
        if p.reused is not None:
            seq, text, tokens = p.reused
            replies[p.question_id] = read_reply(text, p.chosen.route, tokens,
                                                p.chosen.max_new_tokens, is_mock)
    done = store(rt, prepared, replies)
    with rt.db.session() as s:  # taken but not answered (the job changed meanwhile): again
        for qid in set(question_ids) - set(done):
            qs.put_back(s, qid, rt.worker_name, "not answered this time; asked again",
                          permanent=False)
    if done:
        log.info("%s: %d follow-up question(s) answered", rt.worker_name, len(done))
    return done


def store(rt: Runtime, prepared: list[Prepared], replies: dict[int, FollowupReply]
          ) -> list[int]:
    """Record each reply (and its turns) on the question this process still holds."""
    done: list[int] = []
    with rt.db.session() as s:
        for p in prepared:
            reply = replies.get(p.question_id)
            q = s.get(Question, p.question_id)
            job = s.get(Job, p.job_id)
            if reply is None or q is None or job is None or q.holder != rt.worker_name \
                    or q.state != qs.ANSWERING or job.version != p.job_version:
                continue
            if p.reused is not None:
                q.reused_turn = p.reused[0]
            else:
                assert p.request is not None
                conv.append_reply(s, job, q, p.chosen.prompt, reply.text,
                                  reply.generated_tokens)
            q.state, q.holder, q.held_since = qs.ANSWERED, "", 0.0
            q.route, q.job_version, q.answered_at = p.chosen.route, job.version, now()
            q.reply_text, q.reasoning, q.answer = reply.text, reply.reasoning, reply.answer
            q.status, q.generated_tokens = reply.status, reply.generated_tokens
            q.worker, q.error = rt.worker_name, ""
            done.append(p.question_id)
        s.commit()
    return done


def addenda_wanted(rt: Runtime, question_ids: list[int]) -> list[int]:
    """Of these answered questions, those whose thread is wanted as an addendum SR."""
    if not question_ids:
        return []
    from sqlalchemy import select

    with rt.db.session() as s:
        return list(s.scalars(select(Question.id).where(
            Question.id.in_(question_ids), Question.addendum == "wanted",
            Question.state == qs.ANSWERED)))

