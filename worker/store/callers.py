"""Who is calling: the one owner of the name recorded beside a question or a verdict.

Two ways in, one answer.  Over HTTP a request presents a token or a dashboard session
(``worker.store.sessions``): the single operator token is ``operator`` (role operator), a
live named token (``worker.store.tokens``) its name and role, anything else nobody
(``of_token``, ``of_digest``).  At a terminal the CLI already has the database, so its user is the
operator; ``--as NAME`` / ``--reviewer NAME`` may record the work under another name, but
only a name the gateway knows: ``operator`` or a live named token's (``claimed``), so the
CLI cannot write down a reviewer the HTTP side would never accept.  Never patient data.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from worker.store import roles, tokens
from worker.store.db import ApiToken

OPERATOR = tokens.OPERATOR


@dataclass(frozen=True)
class Caller:
    """Who is calling: the name recorded beside their work, and their role's
    permissions (``worker.store.roles``)."""

    name: str
    role: str

    def may(self, permission: str) -> bool:
        return roles.allows(self.role, permission)


OPERATOR_CALLER = Caller(OPERATOR, roles.OPERATOR)


class UnknownCaller(ValueError):
    """A claimed name the gateway has no live token for; the message says what to do."""


def matches(given: str, token: str) -> bool:
    """Compared in constant time, as bytes (a non-ASCII guess is wrong, not an error)."""
    return bool(given) and hmac.compare_digest(given.encode(), token.encode())


def of_token(session_of: Callable[[], Session], given: str,
             operator_token: str) -> Caller | None:
    """The caller a presented token names: the operator, a live named token's holder, or
    None.  ``session_of`` opens a session (only a named token needs the database)."""
    if not given:
        return None
    if matches(given, operator_token):
        return OPERATOR_CALLER
    if not given.startswith(tokens.PREFIX):
        return None
    with session_of() as session:
        row = tokens.live(session, given)
        return None if row is None else Caller(row.name, row.role)


def of_digest(session: Session, token_sha256: str, operator_token: str) -> Caller | None:
    """The caller of the token whose SHA-256 is ``token_sha256`` (what a session keeps),
    while that token is still live: the operator's current token or a named one."""
    if operator_token and hmac.compare_digest(token_sha256, tokens.digest(operator_token)):
        return OPERATOR_CALLER
    live = tokens.live_by_digest(session, token_sha256)
    return None if live is None else Caller(live.name, live.role)


def claimed(session: Session, name: str, flag: str) -> str:
    """The name a CLI user claims with ``flag`` (``--as``, ``--reviewer``), checked."""
    if name == OPERATOR:
        return name
    live = session.scalar(select(ApiToken.id).where(ApiToken.name == name,
                                                    ApiToken.revoked_at.is_(None)))
    if live is None:
        raise UnknownCaller(f"{flag} {name!r}: no live token has that name; give one with "
                            f"'cxr-gateway tokens add {name}', or leave {flag} out "
                            f"(recorded as {OPERATOR})")
    return name
