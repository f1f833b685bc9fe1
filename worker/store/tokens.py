"""Named API tokens: one per reviewer, so every question and verdict carries a name.

A token is shown once, when it is made (``cxr-gateway tokens add NAME --role ...``); the
database keeps only its SHA-256 and its role (``worker.store.roles``).  A token is 32
random bytes, so a plain hash is as good as a slow one here (nobody can guess a preimage
of a random 256-bit secret), and it lets a request be matched with one indexed lookup.
Revoking keeps the row (who had access, until when) and makes the token, and every
dashboard session made with it, fail at once.  The operator's single token
(``CXR_API_TOKEN`` or the generated ``api-token`` file) is not in this table and keeps
working beside these, as ``operator``.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from worker.store import roles
from worker.store.db import ApiToken, now
from worker.store.jobs import iso

OPERATOR = "operator"  # the name the single operator token is recorded under
PREFIX = "cxr_"  # marks a named token in a log line or a password manager
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


class TokenError(ValueError):
    """A token cannot be made or revoked as asked; the message says why."""


def digest(token: str) -> str:
    """The stored form of a token."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def check_name(name: str) -> str:
    """A reviewer's name as it will be recorded: letters, digits, ``. _ @ -``."""
    if not _NAME.match(name):
        raise TokenError(f"{name!r} is not a token name: 1-64 letters, digits, '.', '_', "
                         "'@' or '-', starting with a letter or digit")
    if name.lower() == OPERATOR:
        raise TokenError(f"{OPERATOR!r} is the single operator token's name; choose another")
    return name


def add(session: Session, name: str, role: str = roles.REVIEWER) -> str:
    """A new token for ``name`` with ``role`` (committed); the only time its text exists."""
    check_name(name)
    try:
        roles.check_role(role)
    except roles.RoleError as exc:
        raise TokenError(str(exc)) from None
    if session.scalar(select(ApiToken).where(ApiToken.name == name,
                                             ApiToken.revoked_at.is_(None))) is not None:
        raise TokenError(f"{name!r} already has a token: revoke it first "
                         f"(cxr-gateway tokens revoke {name})")
    token = PREFIX + secrets.token_urlsafe(32)
    session.add(ApiToken(name=name, token_sha256=digest(token), created_at=now(), role=role))
    session.commit()
    return token


def revoke(session: Session, name: str) -> int:
    """Revoke ``name``'s live token(s) (committed); how many were revoked.  Their
    dashboard sessions end with them (``sessions.holder`` finds the token gone)."""
    done = session.execute(update(ApiToken).where(
        ApiToken.name == name, ApiToken.revoked_at.is_(None)).values(revoked_at=now()))
    session.commit()
    return int(getattr(done, "rowcount", 0) or 0)


def listing(session: Session) -> list[dict[str, Any]]:
    """Every token ever made, oldest first: name, state and times (never the token)."""
    return [{"name": t.name, "role": t.role, "state": "revoked" if t.revoked_at else "active",
             "created_at": iso(t.created_at), "revoked_at": iso(t.revoked_at),
             "last_used_at": iso(t.last_used_at)}
            for t in session.scalars(select(ApiToken).order_by(ApiToken.id)).all()]


def live(session: Session, token: str) -> ApiToken | None:
    """The live named token ``token`` is, else None (its use is recorded, at most once a
    minute, so ``tokens list`` shows who still uses theirs)."""
    if not token.startswith(PREFIX):
        return None
    row = live_by_digest(session, digest(token))
    if row is None:
        return None
    t = now()
    if row.last_used_at is None or row.last_used_at < t - 60:
        row.last_used_at = t
        session.commit()
    return row


def live_by_digest(session: Session, token_sha256: str) -> ApiToken | None:
    """The live named token whose SHA-256 is ``token_sha256`` (what a session keeps)."""
    return session.scalar(select(ApiToken).where(ApiToken.token_sha256 == token_sha256,
                                                 ApiToken.revoked_at.is_(None)))
