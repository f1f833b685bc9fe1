"""Who a request is, what they may do, and the guards that say so on each route.

Two kinds of token open the API: the single operator token (settings or the generated
file; ``operator``, role operator) and the named tokens of ``cxr-gateway tokens add NAME
--role ...`` (``worker.store.tokens``: stored hashed, revocable), so that every question
and verdict carries the name of whoever asked or judged (``caller``).

A script presents its token as an ``Authorization: Bearer`` header.  A browser never
holds a token: ``POST /login`` exchanges it for a session (``worker.store.sessions``:
random id, kept hashed, idle and absolute expiry, dies with its token), and the cookie
carries only the session id.  Because a browser sends that cookie by itself, a request
that changes something on a cookie must also carry the session's CSRF token in the
``X-CSRF-Token`` header: a page on another site cannot read it (the ``cxr_csrf`` cookie is
readable by this origin's scripts only).  Never a token in a URL: browser history and
proxy logs keep URLs.  No credential: 401 (the dashboard sends the browser to the login
form instead); a credential without the permission a route needs: 403 naming it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from sqlalchemy.exc import SQLAlchemyError

from worker.ops.api.state import State
from worker.settings import Settings
from worker.store import callers, roles, sessions

COOKIE = "cxr_session"  # the session id; HttpOnly
CSRF_COOKIE = "cxr_csrf"  # the session's CSRF token, for the dashboard's scripts
CSRF_HEADER = "X-CSRF-Token"
TOKEN_FILE = "api-token"
MIN_OPERATOR_TOKEN = 32  # characters: the operator token opens everything
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def api_token(settings: Settings) -> str:
    """The configured token, or the one generated into the data dir on first use (0600;
    32 characters)."""
    if settings.api_token:
        return settings.api_token
    path = settings.data_dir / TOKEN_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(24) + "\n")
        path.chmod(0o600)
    return path.read_text().strip()


def operator_token_problem(settings: Settings) -> str | None:
    """Why ``serve`` and ``api`` must not start with this operator token, else None."""
    given = settings.api_token
    if not given or len(given) >= MIN_OPERATOR_TOKEN:
        return None
    return (f"CXR_API_TOKEN is {len(given)} characters; the operator token opens everything, "
            f"so it must be at least {MIN_OPERATOR_TOKEN} (make one with: python3 -c "
            "'import secrets; print(secrets.token_urlsafe(32))'), or leave it empty for "
            f"one generated into {settings.data_dir / TOKEN_FILE}")


def csrf_of(sid: str) -> str:
    """A session's CSRF token: derived from its secret id, so nothing more is stored."""
    return hmac.new(sid.encode(), b"cxr-csrf", hashlib.sha256).hexdigest()


def csrf_sent(request: Request, sid: str) -> bool:
    """Whether the request carries session ``sid``'s CSRF token in its header."""
    return hmac.compare_digest(request.headers.get(CSRF_HEADER, "").encode(),
                               csrf_of(sid).encode())


def lifetime(settings: Settings) -> sessions.Lifetime:
    return sessions.Lifetime(idle=settings.api_session_idle_minutes * 60,
                             absolute=settings.api_session_hours * 3600)


@dataclass(frozen=True)
class Identity:
    """A request's caller, and the session it came with ("" for a Bearer token)."""

    caller: callers.Caller
    sid: str = ""


class LoginNeeded(Exception):
    """A dashboard page was asked for without a session; the app answers with a redirect
    to the login form (see ``dashboard.to_login``)."""


def identify(request: Request, state: State) -> Identity | None:
    """Whose credential the request carries (looked up once per request): a Bearer
    token, else the session cookie; None for neither (or a database that cannot say)."""
    if hasattr(request.state, "cxr_identity"):
        known: Identity | None = request.state.cxr_identity
        return known
    header = request.headers.get("authorization", "")
    who: Identity | None = None
    try:
        if header.startswith("Bearer "):
            found = callers.of_token(state.db.session, header.removeprefix("Bearer ").strip(),
                                     state.token)
            who = None if found is None else Identity(found)
        elif sid := request.cookies.get(COOKIE, ""):
            with state.db.session() as session:
                held = sessions.holder(session, sid, state.token, lifetime(state.settings))
            who = None if held is None else Identity(held, sid)
    except SQLAlchemyError:
        who = None
    request.state.cxr_identity = who
    return who


async def require_token(request: Request, state: State) -> None:
    """Guards the JSON API: 401 without a credential; 403 for a change made on a session
    cookie without the session's CSRF token."""
    who = identify(request, state)
    if who is None:
        raise HTTPException(401, "a token is needed (Authorization: Bearer ..., or log "
                                 "in at /login)", headers={"WWW-Authenticate": "Bearer"})
    if who.sid and request.method not in SAFE_METHODS and not csrf_sent(request, who.sid):
        raise HTTPException(403, f"a change made with the dashboard's session needs its "
                                 f"CSRF token in the {CSRF_HEADER} header")


async def require_login(request: Request, state: State) -> None:
    """Guards the dashboard: a browser without a session is sent to the login form."""
    if identify(request, state) is None:
        raise LoginNeeded


def refuse(who: callers.Caller, permission: str) -> HTTPException:
    """The 403 that names the permission missing."""
    return HTTPException(403, f"{who.name} (role {who.role}) lacks the {permission!r} "
                              f"permission")


def permit(permission: str) -> Any:
    """A route's dependency: the caller's role holds ``permission``, else 403 naming it
    (after ``require_token``, which the routers run first)."""

    async def check(request: Request, state: State) -> None:
        who = identify(request, state)
        if who is not None and not who.caller.may(permission):
            raise refuse(who.caller, permission)

    return Depends(check)


def calling(request: Request, state: State) -> callers.Caller | None:
    """The caller (the guards have refused a request without one)."""
    who = identify(request, state)
    return None if who is None else who.caller


def caller(request: Request, state: State) -> str:
    """Who is asking, as a name to record beside a question or a verdict (never patient
    data); "" when the request carries no valid credential (the guards refuse those)."""
    who = calling(request, state)
    return "" if who is None else who.name


router = APIRouter(dependencies=[Depends(require_token)])


@router.get("/api/me", tags=["review"])
def me(request: Request, state: State) -> dict[str, Any]:
    """The name this credential records questions and verdicts under, its role and what
    that role may do (the dashboard shows only what it may)."""
    who = calling(request, state) or callers.Caller("", "")
    return {"name": who.name, "role": who.role,
            "permissions": sorted(roles.PERMISSIONS.get(who.role, frozenset()))}
