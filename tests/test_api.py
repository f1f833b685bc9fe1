"""The HTTP service's guards, in this process (FastAPI's test client, no port): which
routes are open, how the token is presented, and that it never travels in a URL."""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from worker.ops.api import COOKIE, create_app
from worker.runtime import configure
from worker.settings import load_settings

with warnings.catch_warnings():  # starlette's note about httpx, not about this code
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

TOKEN = "test-token-5678-abcdefghijklmnopqr"
JSON_API = ("/api/overview", "/api/jobs", "/api/studies", "/api/associations",
            "/openapi.json")


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    rt = configure(load_settings(None, {}, data_dir=tmp_path / "data", api_token=TOKEN))
    with TestClient(create_app(rt.settings, rt.db, lambda queue: 0), follow_redirects=False
                    ) as test_client:
        yield test_client


def test_probes_and_metrics_are_open_and_the_json_api_needs_the_token(
        client: TestClient) -> None:
    for path in ("/healthz", "/readyz", "/metrics"):
        assert client.get(path).status_code in (200, 503), path  # 503: no GPU worker yet
    for path in JSON_API:
        refused = client.get(path)
        assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
        assert client.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get(path, headers={"Authorization": f"Bearer {TOKEN}"}
                          ).status_code == 200, path
    not_ascii = {"Authorization": "Bearer é".encode("latin-1")}  # a wrong guess, not a 500
    assert client.get("/api/jobs", headers=not_ascii).status_code == 401


def test_a_token_in_the_url_does_not_log_in(client: TestClient) -> None:
    answer = client.get(f"/login?token={TOKEN}")
    assert answer.status_code == 200 and "<form" in answer.text
    assert COOKIE not in answer.cookies and COOKIE not in answer.headers["set-cookie"]
    for path in ("/", f"/?token={TOKEN}"):
        assert client.get(path).headers["location"] == "/login"
    assert client.get(f"/api/jobs?token={TOKEN}").status_code == 401


def form_login(client: TestClient, token: str) -> Any:
    """Log in as a browser does: load the form (its one-use value and cookie), post it."""
    form = client.get("/login").text
    value = re.search(r'name="csrf" value="([^"]+)"', form)
    assert value is not None, form
    return client.post("/login", data={"token": token, "csrf": value.group(1)})


def test_the_login_form_sets_the_session_cookie(client: TestClient) -> None:
    for wrong in ("nope", "é", ""):
        refused = form_login(client, wrong)
        assert refused.status_code == 401 and "That is not the token." in refused.text
    no_form_value = client.post("/login", data={"token": TOKEN})  # another site's post
    assert no_form_value.status_code == 403 and "expired" in no_form_value.text
    assert client.get("/").status_code == 303
    answer = form_login(client, f" {TOKEN} ")
    assert answer.status_code == 303 and answer.headers["location"] == "/"
    cookies = {c.split("=", 1)[0]: c for c in answer.headers.get_list("set-cookie")}
    session = cookies[COOKIE]
    assert TOKEN not in session and "HttpOnly" in session  # the session id, not the token
    assert "samesite=strict" in session.lower() and "secure" not in session.lower()
    assert "HttpOnly" not in cookies["cxr_csrf"]  # the dashboard's scripts read it
    page = client.get("/")  # the client keeps the cookie, as a browser does
    assert page.status_code == 200 and "<html" in page.text
    assert client.get("/api/overview").status_code == 200


def test_the_schema_lists_the_json_api_only(client: TestClient) -> None:
    schema = client.get("/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert set(schema["paths"]) == {
        "/healthz", "/readyz", "/metrics", "/api/overview", "/api/jobs",
        "/api/jobs/{job_id}", "/api/jobs/{job_id}/preview.png", "/api/jobs/{job_id}/retry",
        "/api/studies", "/api/studies/{study_uid}", "/api/associations",
        "/api/jobs/{job_id}/questions", "/api/questions/{question_id}",
        "/api/questions/{question_id}/addendum", "/api/jobs/{job_id}/reviews",
        "/api/reviews/agreement", "/api/batches", "/api/me", "/api/tokens",
        "/api/tokens/{name}", "/api/readers", "/api/readers/{name}/summary",
        "/api/readers/{name}/current", "/api/readers/{name}/image",
        "/api/readers/{name}/image.png", "/api/readers/{name}/report",
        "/api/readers/{name}/answers", "/api/readers/{name}/active"}
    names = [p["name"] for p in schema["paths"]["/api/jobs"]["get"]["parameters"]]
    assert names == ["state", "since", "until", "calling_ae", "limit", "offset"]
