"""Deliveries: every document the gateway sends, to each destination, as a row the database
schedules and retries.  This is the one owner of delivery state and its retry rule.

A job's first SR (with its pages) and each addendum SR asked for on it are *documents*
(``Delivery.document``: ``FIRST_SR``, ``addendum_document(question id)``); each
(job, document, destination) has one row with its attempts, last detail and next attempt.
A transient failure schedules the next attempt (``retry_backoff_seconds``, doubling, at
most ``retry_max_backoff_seconds``); a permanent one, or ``delivery_max_attempts``,
fails the row with its reason.  Nothing waits inside a task: the reconciler publishes a
row again when it is due, on any broker.

The first SR's rows are sent under the job's own claim (the job is ``delivering``); an
addendum's rows are claimed one by one (``holder``), since its job is long done, so two
copies of one task never send one addendum twice, and a holder that dies loses its rows
to the reconciler.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from worker.settings import Settings
from worker.store.db import Database, Delivery, now
from worker.store.jobs import backoff, iso

__all__ = ["FIRST_SR", "Attempt", "Pending", "addenda_to_send", "addendum_document", "claim",
           "not_done", "plan", "question_of", "record", "release", "reopen", "rows"]

log = logging.getLogger(__name__)
DONE, FAILED, RETRYING, PENDING = "done", "failed", "retrying", "pending"
OPEN = (PENDING, RETRYING)
ADDENDUM_PREFIX = "addendum:"
FIRST_SR = ""  # the document of a job's first SR (and its pages)


def addendum_document(question_id: int) -> str:
    """The document of the addendum SR asked for with a question."""
    return f"{ADDENDUM_PREFIX}{question_id}"


@dataclass(frozen=True)
class Attempt:
    """What one send to one destination came to (``dicom_gateway`` outcome, as values)."""

    ok: bool
    permanent: bool
    detail: str


def question_of(document: str) -> int | None:
    """The question id an addendum document is for; None for a first SR."""
    if not document.startswith(ADDENDUM_PREFIX):
        return None
    return int(document.removeprefix(ADDENDUM_PREFIX))


def plan(session: Session, job_id: int, document: str, destinations: Iterable[str]) -> None:
    """One row per destination not planned yet (idempotent: a repeated task adds none)."""
    have = set(session.scalars(select(Delivery.destination).where(
        Delivery.job_id == job_id, Delivery.document == document)))
    for dest in destinations:
        if dest not in have:
            session.add(Delivery(job_id=job_id, document=document, destination=dest,
                                 updated_at=now()))
            have.add(dest)


def rows(session: Session, job_id: int, document: str) -> Sequence[Delivery]:
    return session.scalars(select(Delivery).where(
        Delivery.job_id == job_id, Delivery.document == document).order_by(Delivery.id)).all()


def not_done(session: Session, job_id: int, document: str) -> list[Delivery]:
    """The document's rows not delivered yet: due now, scheduled later, or failed (a job
    retried after a failed delivery sends those again)."""
    return [d for d in rows(session, job_id, document) if d.state != DONE]


def reopen(session: Session, job_id: int, document: str) -> None:
    """Failed rows back to pending, due now: someone asked for the document again."""
    for d in rows(session, job_id, document):
        if d.state == FAILED:
            d.state, d.next_attempt_at, d.updated_at = PENDING, 0.0, now()


def claim(db: Database, delivery_id: int, holder: str) -> bool:
    """Take a due, unheld row for one send; False when another process has it, or it is
    not due, or it is finished."""
    with db.session() as s:
        won = s.execute(update(Delivery).where(
            Delivery.id == delivery_id, Delivery.holder == "", Delivery.state.in_(OPEN),
            Delivery.next_attempt_at <= now()).values(holder=holder, held_since=now()))
        s.commit()
        return bool(won.rowcount)  # type: ignore[attr-defined]


def release(db: Database, delivery_id: int, holder: str, detail: str,
            settings: Settings) -> None:
    """Give a claimed row back after a failure that is not the peer's answer (an error of
    ours): counted as an attempt and scheduled like a transient failure."""
    record(db, delivery_id, Attempt(ok=False, permanent=False, detail=detail), settings,
           holder=holder)


def record(db: Database, delivery_id: int, attempt: Attempt, settings: Settings,
           holder: str = "") -> str | None:
    """Note one attempt on its row and release it: done, failed for good (the reason,
    returned as "destination: detail"), or retrying at a later time."""
    refused = None
    with db.session() as s:
        d = s.get(Delivery, delivery_id)
        assert d is not None
        if holder and d.holder != holder:
            return None  # taken over since: the new holder's attempt counts, not ours
        d.attempts += 1
        d.updated_at = now()
        d.detail = attempt.detail
        d.holder, d.held_since = "", 0.0
        if attempt.ok:
            d.state, d.next_attempt_at = DONE, 0.0
            log.info("job %d %s delivered to %s", d.job_id, d.document or "SR", d.destination)
        elif attempt.permanent or d.attempts >= settings.delivery_max_attempts:
            d.state, d.next_attempt_at = FAILED, 0.0
            refused = f"{d.destination}: {attempt.detail}" + (
                "" if attempt.permanent else f" ({d.attempts} attempts)")
        else:
            d.state = RETRYING
            d.next_attempt_at = now() + backoff(
                d.attempts, settings.retry_backoff_seconds, settings.retry_max_backoff_seconds)
            log.warning("job %d %s: delivery to %s failed (%s); attempt %d at %s",
                        d.job_id, d.document or "SR", d.destination, attempt.detail,
                        d.attempts + 1, iso(d.next_attempt_at))
        s.commit()
    return refused


@dataclass(frozen=True)
class Pending:
    """An addendum whose rows need a message: due, or released by a dead holder."""

    question_id: int
    delivery_ids: tuple[int, ...]


def addenda_to_send(db: Database, alive: set[str], requeue_seconds: float) -> list[Pending]:
    """The reconciler's view: addendum rows due now (their retry time came), held by a
    process that stopped beating (released here), or waiting past ``requeue_seconds``
    with no message sent (a lost message).  Each is marked as published, so the next
    sweep does not send it again."""
    t = now()
    with db.session() as s:
        candidates = s.scalars(select(Delivery).where(
            Delivery.document.startswith(ADDENDUM_PREFIX), Delivery.state.in_(OPEN))).all()
        by_question: dict[int, list[int]] = {}
        for d in candidates:
            dead = bool(d.holder) and d.holder not in alive
            due = not d.holder and 0 < d.next_attempt_at <= t
            lost = not d.holder and d.next_attempt_at == 0 and d.updated_at < t - requeue_seconds
            if not (dead or due or lost):
                continue
            d.holder, d.held_since, d.next_attempt_at, d.updated_at = "", 0.0, 0.0, t
            question = question_of(d.document)
            assert question is not None
            by_question.setdefault(question, []).append(d.id)
        s.commit()
    return [Pending(q, tuple(ids)) for q, ids in sorted(by_question.items())]

