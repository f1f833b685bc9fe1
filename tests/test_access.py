"""Who may do what on the HTTP service (issue 31): roles per named token with a 403 that
names the missing permission, server-side sessions that expire, log out and die with
their token, CSRF on every change made with a session cookie, failed logins limited per
address, and serve refusing a short operator token.  In this process (FastAPI's test
client); ``test_access_on_a_real_serve`` repeats the acts on a real serve, SQLite and
PostgreSQL."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from tests.test_api import form_login
from tests.test_review import add_job
from worker.cli import main
from worker.ops.api import COOKIE, create_app
from worker.ops.api.throttle import FailedLogins
from worker.runtime import Runtime, configure
from worker.settings import load_settings
from worker.store import questions, tokens
from worker.store.db import Question
from worker.store.sessions import ApiSession

with warnings.catch_warnings():  # starlette's note about httpx, not about this code
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

TOKEN = "operator-token-for-access-tests-0123456789"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def csrf(client: Any) -> dict[str, str]:
    return {"X-CSRF-Token": client.cookies.get("cxr_csrf") or ""}


@pytest.fixture
def rt(tmp_path: Path) -> Runtime:
    return configure(load_settings(None, {}, data_dir=tmp_path / "data", api_token=TOKEN,
                                   api_login_failures=3))


def client_of(rt: Runtime, **options: Any) -> TestClient:
    return TestClient(create_app(rt.settings, rt.db, lambda queue: 0),
                      follow_redirects=False, **options)


@pytest.fixture
def client(rt: Runtime) -> Iterator[TestClient]:
    with client_of(rt) as test_client:
        yield test_client


def made(rt: Runtime, name: str, role: str = "reviewer") -> str:
    with rt.db.session() as s:
        return tokens.add(s, name, role)


def test_a_reviewer_reads_asks_and_judges_but_gets_403_naming_what_it_lacks(
        rt: Runtime, client: TestClient) -> None:
    job = add_job(rt, ["Edema"])
    reviewer, ops = made(rt, "dr-a"), made(rt, "ops-b", "operator")
    me = client.get("/api/me", headers=bearer(reviewer)).json()
    assert me["role"] == "reviewer" and "retry" not in me["permissions"]
    for path in ("/api/overview", "/api/jobs", f"/api/jobs/{job}", "/api/studies",
                 f"/api/jobs/{job}/questions", f"/api/jobs/{job}/reviews", "/api/batches"):
        assert client.get(path, headers=bearer(reviewer)).status_code == 200, path
    refused = {"associations": client.get("/api/associations", headers=bearer(reviewer)),
               "retry": client.post(f"/api/jobs/{job}/retry", headers=bearer(reviewer)),
               "tokens": client.get("/api/tokens", headers=bearer(reviewer))}
    refused["tokens "] = client.post("/api/tokens", headers=bearer(reviewer),
                                     json={"name": "dr-c", "role": "operator"})
    refused["tokens  "] = client.delete("/api/tokens/ops-b", headers=bearer(reviewer))
    for permission, answer in refused.items():
        assert answer.status_code == 403, (permission, answer.text)
        assert answer.json()["detail"] == (f"dr-a (role reviewer) lacks the "
                                           f"{permission.strip()!r} permission")
    asked = client.post(f"/api/jobs/{job}/questions", headers=bearer(reviewer),
                        json={"question": "Which side?"})
    assert asked.status_code == 202 and asked.json()["asked_by"] == "dr-a"
    assert client.post(f"/api/jobs/{job}/reviews", headers=bearer(reviewer),
                       json={}).status_code == 201
    own = asked.json()["question_id"]
    assert client.post(f"/api/questions/{own}/addendum",
                       headers=bearer(reviewer)).status_code == 202
    theirs = client.post(f"/api/jobs/{job}/questions", headers=bearer(ops),
                         json={"question": "And the heart?"}).json()["question_id"]
    other = client.post(f"/api/questions/{theirs}/addendum", headers=bearer(reviewer))
    assert other.status_code == 403 and "'addendum-any'" in other.json()["detail"]
    with rt.db.session() as s:  # the refused request changed nothing
        assert s.get(Question, theirs).addendum == ""  # type: ignore[union-attr]
    # an operator, named or the single token, does all of it
    for token in (ops, TOKEN):
        assert client.get("/api/associations", headers=bearer(token)).status_code == 200
        assert client.post(f"/api/jobs/{job}/retry", headers=bearer(token)
                           ).status_code == 409  # past the guard: the job is not failed
        assert client.post(f"/api/questions/{own}/addendum",
                           headers=bearer(token)).status_code == 202
    added = client.post("/api/tokens", headers=bearer(ops), json={"name": "dr-c"})
    assert added.status_code == 201 and added.json()["role"] == "reviewer"
    assert client.get("/api/me", headers=bearer(added.json()["token"])).json()["name"] == "dr-c"
    assert client.post("/api/tokens", headers=bearer(ops), json={
        "name": "dr-d", "role": "admin"}).status_code == 422
    listed = {t["name"]: t["role"] for t in client.get("/api/tokens", headers=bearer(TOKEN)).json()}
    assert listed == {"dr-a": "reviewer", "ops-b": "operator", "dr-c": "reviewer"}
    assert client.delete("/api/tokens/dr-c", headers=bearer(ops)).status_code == 200
    assert client.get("/api/me", headers=bearer(added.json()["token"])).status_code == 401


def test_tokens_add_takes_a_role_and_list_shows_it(rt: Runtime,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    data = ["--data-dir", str(rt.settings.data_dir)]
    assert main(["tokens", "add", "ops", "--role", "operator", *data]) == 0
    assert "the operator token for ops" in capsys.readouterr().err
    assert main(["tokens", "add", "dr-e", *data]) == 0
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["tokens", "add", "x", "--role", "admin", *data])
    assert main(["tokens", "list", *data]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["ops", "operator", "active"]
    assert out[1].split()[:3] == ["dr-e", "reviewer", "active"]


def _sessions(rt: Runtime, **values: float) -> None:
    with rt.db.session() as s:
        s.execute(update(ApiSession).values(**values))
        s.commit()


def test_a_session_expires_idle_and_absolute_logs_out_and_dies_with_its_token(
        rt: Runtime, client: TestClient) -> None:
    assert form_login(client, TOKEN).status_code == 303
    sid = client.cookies.get(COOKIE)
    assert sid and TOKEN not in sid and client.get("/api/me").status_code == 200
    with rt.db.session() as s:  # kept hashed: the id is nowhere in the database
        [row] = s.query(ApiSession).all()
        assert row.sid_sha256 == tokens.digest(sid) and row.name == "operator"
    idle = rt.settings.api_session_idle_minutes * 60
    _sessions(rt, last_seen_at=row.last_seen_at - idle - 1)  # unused for longer than idle
    assert client.get("/api/me").status_code == 401
    assert client.get("/").headers["location"] == "/login"
    with rt.db.session() as s:
        assert s.query(ApiSession).one().ended_by == "expiry"

    assert form_login(client, TOKEN).status_code == 303  # absolute: however much used
    _sessions(rt, created_at=row.created_at - rt.settings.api_session_hours * 3600 - 1)
    assert client.get("/api/me").status_code == 401

    assert form_login(client, TOKEN).status_code == 303
    sid = client.cookies.get(COOKIE)
    assert client.post("/logout").status_code == 403  # no CSRF token: still logged in
    assert client.get("/api/me").status_code == 200
    out = client.post("/logout", headers=csrf(client))
    assert out.status_code == 303 and out.headers["location"] == "/login"
    client.cookies.set(COOKIE, sid or "")  # the old cookie, kept by someone: dead
    assert client.get("/api/me").status_code == 401

    reviewer = made(rt, "dr-f")
    client.cookies.clear()
    assert form_login(client, reviewer).status_code == 303
    assert client.get("/api/me").json()["name"] == "dr-f"
    with rt.db.session() as s:
        tokens.revoke(s, "dr-f")
    assert client.get("/api/me").status_code == 401
    assert form_login(client, TOKEN).status_code == 303
    changed = configure(load_settings(None, {}, data_dir=rt.settings.data_dir,
                                      api_token="another-operator-token-0123456789abc"))
    with client_of(changed, cookies=client.cookies) as after:  # the operator token changed
        assert after.get("/api/me").status_code == 401


def test_a_change_made_on_the_cookie_needs_the_csrf_token(rt: Runtime,
                                                         client: TestClient) -> None:
    job = add_job(rt, ["Edema"])
    assert form_login(client, TOKEN).status_code == 303
    for headers in ({}, {"X-CSRF-Token": "0" * 64}):
        for path, body in ((f"/api/jobs/{job}/retry", None),
                           (f"/api/jobs/{job}/questions", {"question": "Why?"}),
                           (f"/api/jobs/{job}/reviews", {})):
            answer = client.post(path, headers=headers, json=body)
            assert answer.status_code == 403 and "CSRF" in answer.json()["detail"], path
    with rt.db.session() as s:
        assert s.query(Question).count() == 0  # nothing was asked
    assert client.get(f"/api/jobs/{job}").status_code == 200  # reading needs none
    assert client.post(f"/api/jobs/{job}/retry", headers=csrf(client)).status_code == 409
    assert client.post(f"/api/jobs/{job}/questions", headers=csrf(client),
                       json={"question": "Why?"}).status_code == 202
    client.cookies.clear()  # a script with its token needs none: no browser sends it
    assert client.post(f"/api/jobs/{job}/reviews", headers=bearer(TOKEN),
                       json={}).status_code == 201


def test_failed_logins_are_limited_per_address(rt: Runtime) -> None:
    with client_of(rt, client=("10.0.0.7", 5000)) as one, \
            client_of(rt, client=("10.0.0.8", 5000)) as other:
        for _ in range(3):
            assert form_login(one, "guess").status_code == 401
        limited = form_login(one, TOKEN)  # even the right token, until the window moves
        assert limited.status_code == 429 and 0 < int(limited.headers["Retry-After"]) <= 900
        assert "Too many failed logins" in limited.text
        assert form_login(other, TOKEN).status_code == 303  # another address is not held


def test_the_failure_window_moves_and_addresses_are_bounded() -> None:
    clock = [0.0]
    logins = FailedLogins(2, window=60, addresses=3, clock=lambda: clock[0])
    logins.failed("a")
    clock[0] = 30
    logins.failed("a")
    assert logins.retry_after("a") == 30
    clock[0] = 61
    assert logins.retry_after("a") is None  # the first failure left the window
    for address in "bcde":
        logins.failed(address)
    assert set(logins._seen) == {"c", "d", "e"}  # the least recent forgotten first
    logins.failed("c")
    logins.succeeded("c")
    assert logins.retry_after("c") is None


def test_the_session_cookie_is_secure_over_https_or_when_set(rt: Runtime,
                                                             tmp_path: Path) -> None:
    with client_of(rt, base_url="https://gateway.example") as tls:
        cookies = form_login(tls, TOKEN).headers.get_list("set-cookie")
        assert all("secure" in c.lower() for c in cookies), cookies
    forced = configure(load_settings(None, {}, data_dir=tmp_path / "data2", api_token=TOKEN,
                                     api_secure_cookie=True))
    with client_of(forced) as plain:  # behind a TLS proxy: the browser is on https
        cookies = plain.get("/login").headers.get_list("set-cookie")
        assert all("secure" in c.lower() for c in cookies), cookies


@pytest.mark.parametrize("command", ["serve", "api"])
def test_serve_and_api_refuse_a_short_operator_token_in_one_line(
        command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CXR_API_TOKEN", "x" * 31)
    assert main([command, "--data-dir", str(tmp_path / "data")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(
        "error: CXR_API_TOKEN is 31 characters; the operator token opens everything, so it "
        "must be at least 32"), err
    assert not (tmp_path / "data").exists()  # refused before anything was made


def test_questions_quota_still_counts_per_reviewer(rt: Runtime, client: TestClient) -> None:
    """The reviewer's name, not the token's text, is what the hourly quota counts."""
    job = add_job(rt, ["Edema"])
    token = made(rt, "dr-q")
    with rt.db.session() as s:
        for _ in range(rt.settings.questions_per_reviewer_per_hour):
            questions.record(s, s.get(questions.Job, job), "q", "dr-q", "gpu").state = "answered"
        s.commit()
    answer = client.post(f"/api/jobs/{job}/questions", headers=bearer(token),
                         json={"question": "one more"})
    assert answer.status_code == 429 and answer.json()["limit"] == 120


# -- the same acts on a real serve, SQLite and PostgreSQL --------------------------------

def cli(srv: Any, *args: str) -> str:
    """``cxr-gateway ARGS`` beside the serve (its environment and data dir); stdout."""
    import subprocess

    from tests.peers import BIN

    done = subprocess.run([str(BIN / "cxr-gateway"), *args, "--data-dir", str(srv.data_dir)],
                          capture_output=True, text=True, timeout=120, env=srv.env)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def browser_login(http: Any, token: str) -> Any:
    """The login form as a browser posts it, over a real socket (httpx keeps cookies)."""
    import re

    value = re.search(r'name="csrf" value="([^"]+)"', http.get("/login").text)
    assert value is not None
    return http.post("/login", data={"token": token, "csrf": value.group(1)})


@pytest.mark.integration  # a real serve, dcmtk's storescu, PostgreSQL
def test_access_on_a_real_serve(serve_factory: Any, database_env: dict[str, str],
                                tmp_path: Path) -> None:
    import httpx
    from pydicom.uid import generate_uid

    from tests.dicom_factory import make_cr
    from tests.peers import wait_until
    from tests.test_end_to_end import db_for
    from worker.store.db import Database

    srv = serve_factory.new({**database_env, "CXR_API_TOKEN": TOKEN,
                             "CXR_MODEL_BACKEND": "mock", "CXR_API_LOGIN_FAILURES": "3",
                             "CXR_QUESTIONS_PER_REVIEWER_PER_HOUR": "1"}).start()
    db = (Database(database_env["CXR_DATABASE_URL"]) if database_env
          else db_for(srv.data_dir))
    study = tmp_path / "cr.dcm"
    make_cr(generate_uid(), size=64, seed=31).save_as(study, enforce_file_format=True)
    assert srv.storescu(study).returncode == 0
    base = f"http://127.0.0.1:{srv.api_port}"
    ops_api = httpx.Client(base_url=base, headers=bearer(TOKEN), timeout=60)
    job = wait_until(lambda: next((j["job_id"] for j in ops_api.get("/api/jobs").json()
                                   if j["state"] == "done"), None), "a done job")
    reviewer = cli(srv, "tokens", "add", "dr-a")
    ops = cli(srv, "tokens", "add", "ops-b", "--role", "operator")
    as_reviewer = httpx.Client(base_url=base, headers=bearer(reviewer), timeout=60)
    for method, path, permission in (("POST", f"/api/jobs/{job}/retry", "retry"),
                                     ("GET", "/api/tokens", "tokens"),
                                     ("GET", "/api/associations", "associations")):
        answer = as_reviewer.request(method, path)
        assert answer.status_code == 403 and permission in answer.json()["detail"], path
    assert httpx.get(base + "/api/tokens", headers=bearer(ops)).status_code == 200
    # quotas: one question an hour for this reviewer
    first = as_reviewer.post(f"/api/jobs/{job}/questions", json={"question": "Which side?"})
    assert first.status_code == 202, first.text
    again = as_reviewer.post(f"/api/jobs/{job}/questions", json={"question": "And now?"})
    assert again.status_code == 429 and again.json()["limit"] == 1
    assert int(again.headers["Retry-After"]) > 0

    with httpx.Client(base_url=base, timeout=60) as browser:  # the operator's session
        assert browser_login(browser, TOKEN).status_code == 303
        assert browser.get("/").status_code == 200
        assert TOKEN not in str(browser.cookies.get(COOKIE))
        assert browser.post(f"/api/jobs/{job}/retry").status_code == 403  # no CSRF token
        assert browser.post(f"/api/jobs/{job}/retry", headers=csrf(browser)
                            ).status_code == 409  # accepted; the job is not failed
        kept = browser.cookies.get(COOKIE)
        assert browser.post("/logout", headers=csrf(browser)).status_code == 303
        assert httpx.get(base + "/api/me", cookies={COOKIE: kept or ""}).status_code == 401
    with httpx.Client(base_url=base, timeout=60) as browser:  # idle past the limit
        assert browser_login(browser, TOKEN).status_code == 303
        with db.session() as s:
            s.execute(update(ApiSession).values(last_seen_at=ApiSession.last_seen_at - 1801))
            s.commit()
        assert browser.get("/api/me").status_code == 401
        assert browser.get("/").headers["location"] == "/login"
    with httpx.Client(base_url=base, timeout=60) as browser:  # dies with its token
        assert browser_login(browser, reviewer).status_code == 303
        assert browser.get("/api/me").json()["name"] == "dr-a"
        cli(srv, "tokens", "revoke", "dr-a")
        assert browser.get("/api/me").status_code == 401
    with httpx.Client(base_url=base, timeout=60) as guesser:
        for _ in range(3):
            assert browser_login(guesser, "guess").status_code == 401
        limited = browser_login(guesser, TOKEN)
        assert limited.status_code == 429 and int(limited.headers["Retry-After"]) > 0
    with db.session() as s:
        ended = sorted(str(r.ended_by) for r in s.query(ApiSession).all())
    assert ended == ["expiry", "logout", "revoke"]
    db.engine.dispose()


@pytest.mark.integration  # the real command, as a site starts it
def test_serve_with_a_short_operator_token_does_not_start(tmp_path: Path) -> None:
    import os
    import subprocess

    from tests.peers import BIN

    done = subprocess.run([str(BIN / "cxr-gateway"), "serve", "--data-dir",
                           str(tmp_path / "data")], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "CXR_API_TOKEN": "secret"})
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith(
        "error: CXR_API_TOKEN is 6 characters"), done.stderr
