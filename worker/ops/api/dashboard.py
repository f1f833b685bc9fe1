"""The dashboard page and its login form.

The dashboard is one static page that reads the JSON API with the session cookie.  The
cookie is set only by POSTing the login form: a token in a URL (``/login?token=...``)
would stay in browser history and proxy logs, so a query is never read.  The cookie is
HttpOnly and SameSite=Strict, and lives for the browser session.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from worker.ops.api.auth import COOKIE, require_login, token_caller
from worker.ops.api.state import State

STATIC = Path(__file__).resolve().parent.parent / "static"

router = APIRouter(include_in_schema=False)


def _page(name: str) -> str:
    return (STATIC / name).read_text()


async def to_login(request: Request, exc: Exception) -> Response:
    """The answer to ``LoginNeeded``: the browser goes to the login form."""
    return RedirectResponse("/login", status_code=303)


@router.get("/", dependencies=[Depends(require_login)])
def dashboard() -> Response:
    return HTMLResponse(_page("dashboard.html"))


@router.get("/login")
def login_form() -> Response:
    """The form only; a ``token`` in the query is ignored (see the module's docstring)."""
    return HTMLResponse(_page("login.html"))


@router.post("/login")
def login(state: State, token: Annotated[str, Form()] = "") -> Response:
    """The right token sets the session cookie and opens the dashboard; a wrong one
    shows the form again with an error."""
    given = token.strip()
    if token_caller(state, given) is None:
        return HTMLResponse(_page("login.html").replace(
            "<!--error-->", "<p class=error>That is not the token.</p>"), status_code=401)
    response = RedirectResponse("/", status_code=303)
    # the token given (the operator's or a named one), so the dashboard acts as its name
    response.set_cookie(COOKIE, given, httponly=True, samesite="strict")
    return response


@router.get("/static/review.js")
def review_js() -> Response:
    """The dashboard's review panel, batch table and agreement table (code, no data)."""
    return Response((STATIC / "review.js").read_text(), media_type="text/javascript")
