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

import secrets

from fastapi import APIRouter, Depends, HTTPException, Request
from sqlalchemy.exc import SQLAlchemyError

from worker.ops.api.state import State
from worker.settings import Settings
from worker.store import callers

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


def presented(request: Request) -> str:
    """The token the request carries: the Bearer header, else the session cookie."""
    header = request.headers.get("authorization", "")
    if header.startswith("Bearer "):
        return header.removeprefix("Bearer ").strip()
    return request.cookies.get(COOKIE, "")


class LoginNeeded(Exception):
    """A dashboard page was asked for without the token; the app answers with a redirect
    to the login form (see ``dashboard.to_login``)."""


def token_caller(state: State, given: str) -> str | None:
    """The caller a token names (``worker.store.callers``), or None; a database without
    the named tokens' table yet has none."""
    try:
        return callers.of_token(state.db.session, given, state.token)
    except SQLAlchemyError:
        return None


def identify(request: Request, state: State) -> str | None:
    """Whose token the request carries (``worker.store.callers``, the one owner of who is
    calling): ``operator``, a live named token's name, else None."""
    return token_caller(state, presented(request))


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


router = APIRouter(dependencies=[Depends(require_token)])


@router.get("/api/me", tags=["review"])
def me(request: Request, state: State) -> dict[str, str]:
    """The name this token records questions and verdicts under."""
    return {"name": caller(request, state)}
