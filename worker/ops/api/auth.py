"""The tokens: where the operator's comes from, how a request presents one, who it names,
and the two dependencies that guard routes with them.

Two kinds open the API and the dashboard alike: the single operator token (settings or
the generated file; recorded as ``operator``) and the named tokens of ``cxr-gateway
tokens add NAME`` (``worker.store.tokens``: stored hashed, revocable), so that every
question and verdict carries the name of whoever asked or judged (``caller``).

A request presents the token as an ``Authorization: Bearer`` header (scripts) or as the
session cookie that ``POST /login`` sets (the dashboard).  Never in a URL: browser
history and proxy logs keep URLs.  The JSON API answers 401 without it; the dashboard
sends the browser to the login form instead.
"""

from __future__ import annotations

import hmac
import secrets

from fastapi import HTTPException, Request
from sqlalchemy.exc import SQLAlchemyError

from worker.ops.api.state import State
from worker.settings import Settings
from worker.store import tokens

COOKIE = "cxr_token"
TOKEN_FILE = "api-token"


def api_token(settings: Settings) -> str:
    """The configured token, or the one generated into the data dir on first use (0600)."""
    if settings.api_token:
        return settings.api_token
    path = settings.data_dir / TOKEN_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(24) + "\n")
        path.chmod(0o600)
    return path.read_text().strip()


def matches(given: str, token: str) -> bool:
    """Compared in constant time, as bytes (a non-ASCII guess is wrong, not an error)."""
    return bool(given) and hmac.compare_digest(given.encode(), token.encode())


def presented(request: Request) -> str:
    """The token the request carries: the Bearer header, else the session cookie."""
    header = request.headers.get("authorization", "")
    if header.startswith("Bearer "):
        return header.removeprefix("Bearer ").strip()
    return request.cookies.get(COOKIE, "")


class LoginNeeded(Exception):
    """A dashboard page was asked for without the token; the app answers with a redirect
    to the login form (see ``dashboard.to_login``)."""


def identify(request: Request, state: State) -> str | None:
    """Whose token the request carries: ``operator`` for the single operator token, the
    name of a live named token (``cxr-gateway tokens add NAME``), else None."""
    given = presented(request)
    if not given:
        return None
    if matches(given, state.token):
        return tokens.OPERATOR
    return token_name(state, given)


def token_name(state: State, given: str) -> str | None:
    """The name of a live named token (one indexed lookup of its SHA-256), else None."""
    if not given.startswith(tokens.PREFIX):
        return None
    try:
        with state.db.session() as session:
            return tokens.name_of(session, given)
    except SQLAlchemyError:  # a database without the table yet: no named tokens
        return None


async def require_token(request: Request, state: State) -> None:
    """Guards the JSON API: 401, with the ways to authenticate, unless a token came."""
    if identify(request, state) is None:
        raise HTTPException(401, "a token is needed (Authorization: Bearer ..., or log "
                                 "in at /login)", headers={"WWW-Authenticate": "Bearer"})


async def require_login(request: Request, state: State) -> None:
    """Guards the dashboard: a browser without a token is sent to the login form."""
    if identify(request, state) is None:
        raise LoginNeeded


def caller(request: Request, state: State) -> str:
    """Who is asking, as a name to record beside a question or a verdict (never patient
    data): the single operator token is ``operator``, a named token its name; "" when
    the request carries no valid token (the guards refuse those first)."""
    return identify(request, state) or ""
