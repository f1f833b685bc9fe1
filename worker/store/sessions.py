"""Dashboard sessions: what a browser's cookie names, kept here rather than the token.

A login exchanges a token for a random session id.  The browser keeps only the id; the
database keeps its SHA-256 (a stolen database opens no browser), the name it acts as, and
the SHA-256 of the token it was made with, so that the session lives exactly as long as
that token: revoking a named token, or changing the operator token, ends its sessions at
once, on every process that reads this database.  A session also ends on logout, after
``idle`` seconds without a request, and ``absolute`` seconds after login whatever its use.
Its role is read from the token's row on each request, so a changed role applies at once.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from sqlalchemy import Float, Integer, String, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from worker.store import callers, tokens
from worker.store.db import Base, now

TOUCH_SECONDS = 15.0  # a session's last use is written at most this often (or idle/4)


class ApiSession(Base):
    """One browser's login (migration 0013); ``ended_at`` set by logout, expiry or revoke."""

    __tablename__ = "api_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sid_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    token_sha256: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[float] = mapped_column(Float)
    last_seen_at: Mapped[float] = mapped_column(Float)
    ended_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    ended_by: Mapped[str | None] = mapped_column(String(16), nullable=True)


@dataclass(frozen=True)
class Lifetime:
    """How long a session may go unused (``idle``) and live at all (``absolute``), s."""

    idle: float
    absolute: float


def start(session: Session, name: str, token: str) -> str:
    """A new session for ``name``, made with ``token`` (committed); its id, never stored."""
    sid = secrets.token_urlsafe(32)
    t = now()
    session.add(ApiSession(sid_sha256=tokens.digest(sid), token_sha256=tokens.digest(token),
                           name=name, created_at=t, last_seen_at=t))
    session.commit()
    return sid


def holder(session: Session, sid: str, operator_token: str,
           life: Lifetime) -> callers.Caller | None:
    """Who the live session ``sid`` acts as, else None; an expired one is ended here."""
    if not sid:
        return None
    row = session.scalar(select(ApiSession).where(ApiSession.sid_sha256 == tokens.digest(sid),
                                                  ApiSession.ended_at.is_(None)))
    if row is None:
        return None
    t = now()
    if t - row.last_seen_at > life.idle or t - row.created_at > life.absolute:
        row.ended_at, row.ended_by = t, "expiry"
        session.commit()
        return None
    who = callers.of_digest(session, row.token_sha256, operator_token)
    if who is None:  # its token was revoked or changed since the login
        row.ended_at, row.ended_by = t, "revoke"
        session.commit()
        return None
    if t - row.last_seen_at > min(TOUCH_SECONDS, life.idle / 4):
        row.last_seen_at = t
        session.commit()
    return who


def end(session: Session, sid: str, by: str = "logout") -> bool:
    """End the session ``sid`` (committed); whether a live one was ended."""
    done = session.execute(update(ApiSession).where(
        ApiSession.sid_sha256 == tokens.digest(sid), ApiSession.ended_at.is_(None)).values(
        ended_at=now(), ended_by=by))
    session.commit()
    return bool(getattr(done, "rowcount", 0))


def live_count(session: Session) -> int:
    """Sessions not ended (some may be past their expiry, ended at their next use)."""
    return len(session.scalars(select(ApiSession.id).where(
        ApiSession.ended_at.is_(None))).all())
