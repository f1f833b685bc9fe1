"""Conversations in the database (issue 25): each study's turns with the model, verbatim.

A study's conversation is its turns, verbatim, in ``conversation_turns``: the findings
prompt (with the reference to the job's stored model input, the image the model read),
the findings reply with its reasoning, and after an ``ok`` answer the report prompt and
reply -- exactly the turns inference sent and received -- then every answered follow-up
(the question as sent, the reply as generated).  The first turns are written from the
job's stored result when it lands (``record_first_turns``) or, for a job that got its
result before this table existed, the first time anyone reads or asks (``turns``).

The questions asked on a conversation, and their work queue, are
``worker.store.questions``'.

Retention: ``worker.store.retention`` deletes only skipped instances' spool files.  A job
row -- its model input (the PNG the model read), its result, its conversation and its
questions -- is never purged by the gateway, so a question can be asked for as long as
the job is kept.  Deleting a job by hand deletes what can be asked about it.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models.backend import Turn
from models.prompts import DEFAULT_PROMPT, REPORT_PROMPT
from worker.store.db import ConversationTurn, Job, Question, now

FINDINGS, REPORT_KIND, FOLLOWUP = "findings", "report", "followup"


def image_ref(png: bytes | None) -> str:
    """How the first user turn names its image: the job's model input, by content hash."""
    return f"model_input sha256:{hashlib.sha256(png).hexdigest()}" if png else "model_input"


def first_turns(result: dict[str, Any]) -> list[tuple[str, str, str, int | None]]:
    """(role, kind, text, tokens) of the turns inference ran, from the stored result: the
    findings prompt and reply, then the report prompt and reply when the report ran."""
    out: list[tuple[str, str, str, int | None]] = [
        ("user", FINDINGS, str(result.get("prompt") or DEFAULT_PROMPT), None),
        ("assistant", FINDINGS, str(result.get("findings_text") or ""),
         result.get("findings_tokens")),
    ]
    if result.get("report_text"):
        out += [("user", REPORT_KIND, REPORT_PROMPT, None),
                ("assistant", REPORT_KIND, str(result["report_text"]),
                 result.get("report_tokens"))]
    return out


def record_first_turns(session: Session, job: Job) -> bool:
    """Write the job's first turns from its result, once (idempotent; False if there is
    no result yet or they are there already)."""
    if job.result is None:
        return False
    exists = session.scalar(select(func.count()).select_from(ConversationTurn).where(
        ConversationTurn.job_id == job.id, ConversationTurn.job_version == job.version))
    if exists:
        return False
    t = now()
    ref = image_ref(job.model_input)
    for seq, (role, kind, text, tokens) in enumerate(first_turns(json.loads(job.result))):
        session.add(ConversationTurn(job_id=job.id, job_version=job.version, seq=seq,
                                     role=role, kind=kind, text=text,
                                     image_ref=ref if seq == 0 else "",
                                     generated_tokens=tokens, created_at=t))
    try:
        session.commit()
    except IntegrityError:  # another process wrote them first: theirs are the same turns
        session.rollback()
        return False
    return True


def record_for_jobs(session: Session, job_ids: list[int]) -> int:
    """``record_first_turns`` for jobs whose results just landed; how many were written."""
    written = 0
    for job_id in job_ids:
        job = session.get(Job, job_id)
        if job is not None and record_first_turns(session, job):
            written += 1
    return written


def turns(session: Session, job: Job) -> list[ConversationTurn]:
    """The job's conversation in order (its current version), first turns written now if
    its result predates this table."""
    record_first_turns(session, job)
    return list(session.scalars(select(ConversationTurn).where(
        ConversationTurn.job_id == job.id, ConversationTurn.job_version == job.version)
        .order_by(ConversationTurn.seq)).all())


def as_model_turns(rows: list[ConversationTurn]) -> tuple[Turn, ...]:
    return tuple(Turn(r.role, r.text) for r in rows)


def report_turn(rows: list[ConversationTurn]) -> ConversationTurn | None:
    """The latest assistant reply to the report prompt, if the conversation holds one."""
    found = None
    for prev, row in zip(rows, rows[1:], strict=False):
        if row.role == "assistant" and prev.role == "user" and prev.text == REPORT_PROMPT:
            found = row
    return found


def append_reply(session: Session, job: Job, question: Question, prompt: str,
                 reply: str, tokens: int | None) -> int:
    """Add the question as sent and the reply as generated after the last turn; the
    reply's seq.  The caller commits."""
    last = session.scalar(select(func.max(ConversationTurn.seq)).where(
        ConversationTurn.job_id == job.id, ConversationTurn.job_version == job.version))
    seq = (last if last is not None else -1) + 1
    t = now()
    session.add(ConversationTurn(job_id=job.id, job_version=job.version, seq=seq,
                                 role="user", kind=FOLLOWUP, text=prompt,
                                 question_id=question.id, created_at=t))
    session.add(ConversationTurn(job_id=job.id, job_version=job.version, seq=seq + 1,
                                 role="assistant", kind=FOLLOWUP, text=reply,
                                 question_id=question.id, generated_tokens=tokens,
                                 created_at=t))
    return seq + 1
