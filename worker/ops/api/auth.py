"""The token: where it comes from, how a request presents it, and the two dependencies
that guard routes with it.

A request presents the token as an ``Authorization: Bearer`` header (scripts) or as the
session cookie that ``POST /login`` sets (the dashboard).  Never in a URL: browser
history and proxy logs keep URLs.  The JSON API answers 401 without it; the dashboard
sends the browser to the login form instead.
"""

from __future__ import annotations

import hmac
import secrets

from fastapi import HTTPException, Request

from worker.ops.api.state import State
from worker.settings import Settings

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


async def require_token(request: Request, state: State) -> None:
    """Guards the JSON API: 401, with the ways to authenticate, unless the token came."""
    if not matches(presented(request), state.token):
        raise HTTPException(401, "a token is needed (Authorization: Bearer ..., or log "
                                 "in at /login)", headers={"WWW-Authenticate": "Bearer"})


async def require_login(request: Request, state: State) -> None:
    """Guards the dashboard: a browser without the token is sent to the login form."""
    if not matches(presented(request), state.token):
        raise LoginNeeded
