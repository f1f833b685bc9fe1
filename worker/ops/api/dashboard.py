"""The dashboard page, its login form and logout.

The dashboard is one static page that reads the JSON API with the session cookie.  A
login is only a POST of the form: a token in a URL (``/login?token=...``) would stay in
browser history and proxy logs, so a query is never read.  The form carries a one-use
value that must match a cookie set with it (a page on another site cannot read either),
so no other site can log a browser in under its own token.  A good token makes a
server-side session (``worker.store.sessions``); the browser gets two cookies: the
session id (HttpOnly) and its CSRF token (for the dashboard's scripts to send back as a
header).  Both are SameSite=Strict, live for the browser session and are ``Secure`` when
the service is reached over HTTPS (or ``CXR_API_SECURE_COOKIE`` says so).  Failed logins
are limited per client address (``throttle``).
"""

from __future__ import annotations

import hmac
import secrets
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from worker.ops.api.auth import (
    COOKIE,
    CSRF_COOKIE,
    CSRF_HEADER,
    csrf_of,
    csrf_sent,
    require_login,
)
from worker.ops.api.state import ApiState, State
from worker.store import callers, sessions

STATIC = Path(__file__).resolve().parent.parent / "static"
LOGIN_COOKIE = "cxr_login"  # the login form's one-use value

router = APIRouter(include_in_schema=False)


def _page(name: str) -> str:
    return (STATIC / name).read_text()


async def to_login(request: Request, exc: Exception) -> Response:
    """The answer to ``LoginNeeded``: the browser goes to the login form."""
    return RedirectResponse("/login", status_code=303)


def _secure(request: Request, state: ApiState) -> bool:
    return state.settings.api_secure_cookie or request.url.scheme == "https"


@router.get("/", dependencies=[Depends(require_login)])
def dashboard() -> Response:
    return HTMLResponse(_page("dashboard.html"))


def _form(request: Request, state: ApiState, error: str = "", status: int = 200,
          headers: dict[str, str] | None = None) -> Response:
    """The login form with a fresh one-use value (and ``error`` above it)."""
    value = secrets.token_urlsafe(24)
    page = _page("login.html").replace("<!--csrf-->", value)
    if error:
        page = page.replace("<!--error-->", f"<p class=error>{error}</p>")
    response = HTMLResponse(page, status_code=status, headers=headers)
    response.set_cookie(LOGIN_COOKIE, value, path="/login", httponly=True,
                        samesite="strict", secure=_secure(request, state))
    return response


@router.get("/login")
def login_form(request: Request, state: State) -> Response:
    """The form only; a ``token`` in the query is ignored (see the module's docstring)."""
    return _form(request, state)


@router.post("/login")
def login(request: Request, state: State, token: Annotated[str, Form()] = "",
          csrf: Annotated[str, Form()] = "") -> Response:
    """A good token opens a session and the dashboard; a wrong one shows the form again,
    counted against the client's address; too many, and 429 until the window moves."""
    address = request.client.host if request.client else "?"
    wait = state.logins.retry_after(address)
    if wait is not None:
        return _form(request, state, f"Too many failed logins from this address; try again "
                     f"in {wait} s.", 429, {"Retry-After": str(wait)})
    expected = request.cookies.get(LOGIN_COOKIE, "")
    if not expected or not hmac.compare_digest(csrf.encode(), expected.encode()):
        return _form(request, state, "The form had expired; enter the token again.", 403)
    given = token.strip()
    who = callers.of_token(state.db.session, given, state.token)
    if who is None:
        state.logins.failed(address)
        return _form(request, state, "That is not the token.", 401)
    state.logins.succeeded(address)
    with state.db.session() as session:
        sid = sessions.start(session, who.name, given)
    response = RedirectResponse("/", status_code=303)
    secure = _secure(request, state)
    response.set_cookie(COOKIE, sid, httponly=True, samesite="strict", secure=secure)
    response.set_cookie(CSRF_COOKIE, csrf_of(sid), samesite="strict", secure=secure)
    response.delete_cookie(LOGIN_COOKIE, path="/login", secure=secure, httponly=True,
                           samesite="strict")
    return response


@router.post("/logout")
def logout(request: Request, state: State) -> Response:
    """End the session (with its CSRF token, so no other site can log a reader out) and
    go to the login form; without a session, just the form."""
    sid = request.cookies.get(COOKIE, "")
    if sid and not csrf_sent(request, sid):
        return Response(f"logging out needs the session's CSRF token in {CSRF_HEADER}",
                        status_code=403)
    if sid:
        with state.db.session() as session:
            sessions.end(session, sid)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE)
    response.delete_cookie(CSRF_COOKIE)
    return response


@router.get("/static/review.js")
def review_js() -> Response:
    """The dashboard's review panel, batch table and agreement table (code, no data)."""
    return Response((STATIC / "review.js").read_text(), media_type="text/javascript")
