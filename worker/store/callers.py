"""Who is calling: the one owner of the name recorded beside a question or a verdict.

Two ways in, one answer.  Over HTTP a request presents a token: the single operator token
is ``operator``, a live named token (``worker.store.tokens``) its name, anything else
nobody (``of_token``).  At a terminal the CLI already has the database, so its user is the
operator; ``--as NAME`` / ``--reviewer NAME`` may record the work under another name, but
only a name the gateway knows: ``operator`` or a live named token's (``claimed``), so the
CLI cannot write down a reviewer the HTTP side would never accept.  Never patient data.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from worker.store import tokens
from worker.store.db import ApiToken

OPERATOR = tokens.OPERATOR


class UnknownCaller(ValueError):
    """A claimed name the gateway has no live token for; the message says what to do."""


def matches(given: str, token: str) -> bool:
    """Compared in constant time, as bytes (a non-ASCII guess is wrong, not an error)."""
    return bool(given) and hmac.compare_digest(given.encode(), token.encode())


def of_token(session_of: Callable[[], Session], given: str, operator_token: str) -> str | None:
    """The caller a presented token names: ``operator``, a live named token's name, or
    None.  ``session_of`` opens a session (only a named token needs the database)."""
    if not given:
        return None
    if matches(given, operator_token):
        return OPERATOR
    if not given.startswith(tokens.PREFIX):
        return None
    with session_of() as session:
        return tokens.name_of(session, given)


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
