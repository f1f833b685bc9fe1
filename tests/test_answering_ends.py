"""Answering a follow-up question always ends (issue 31): any failure after the claim
releases it, a question is retried a bounded number of times and then failed with its
reason, never left ``answering``; the database holds at most one question per job being
answered, so two workers racing on one job answer its questions in order, each asked
after the earlier answer.  On SQLite, and on PostgreSQL (the many-machines database)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from models.backend import Generation, ModelRequest
from tests.test_followups import Recording, ask, first_turns, new_job, question
from worker.pipeline import followups
from worker.runtime import Runtime, configure
from worker.settings import load_settings
from worker.store import questions
from worker.store.db import Question


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
def rt(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Runtime]:
    extra: dict[str, Any] = {}
    drop = None
    if request.param == "postgres":
        from tests.peers import fresh_database

        url, drop = fresh_database()
        extra["database_url"] = url
    runtime = configure(load_settings(None, {}, data_dir=tmp_path / "data", **extra))
    runtime._backend = Recording()  # type: ignore[assignment]
    try:
        yield runtime
    finally:
        runtime.db.engine.dispose()
        if drop is not None:
            drop()


class Failing(Recording):
    """A backend whose generate raises what a real one may: CUDA out of memory (a
    RuntimeError), hf-space's unguarded ``paths[0]`` (an IndexError)."""

    def __init__(self, error: BaseException) -> None:
        super().__init__()
        self.error = error

    def generate(self, requests: Sequence[ModelRequest]) -> list[Generation]:
        raise self.error


def failure(kind: str, monkeypatch: pytest.MonkeyPatch, rt: Runtime) -> None:
    if kind == "out of memory":
        rt._backend = Failing(RuntimeError("CUDA out of memory"))  # type: ignore[assignment]
    elif kind == "index error":
        rt._backend = Failing(IndexError("list index out of range"))  # type: ignore[assignment]
    else:  # the answer cannot be stored: the database refuses the turns
        def refuse(*_a: Any, **_k: Any) -> int:
            raise IntegrityError("INSERT INTO conversation_turns", {}, Exception("duplicate"))

        monkeypatch.setattr(followups.conv, "append_reply", refuse)


@pytest.mark.parametrize("kind", ["out of memory", "index error", "integrity error"])
def test_each_failure_after_the_claim_releases_it_and_ends_failed(
        rt: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    job = new_job(rt, tmp_path)
    first_turns(rt, job)
    qid = ask(rt, job, "Where is the edema?")
    failure(kind, monkeypatch, rt)
    states = []
    for _ in range(questions.MAX_ATTEMPTS):
        followups.answer_waiting(rt)  # the GPU task's call: it must come back
        view = question(rt, qid)
        states.append(view["state"])
    assert states == ["waiting"] * (questions.MAX_ATTEMPTS - 1) + ["failed"], states
    assert view["error"].startswith("follow-up failed:") and "tried 3 times" in view["error"]
    with rt.db.session() as s:
        q = s.get(Question, qid)
        assert q is not None and q.holder == "" and q.attempts == questions.MAX_ATTEMPTS


def test_a_later_question_of_the_job_is_answered_after_one_failed(
        rt: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    job = new_job(rt, tmp_path)
    first_turns(rt, job)
    stuck = ask(rt, job, "Where is the edema?")
    rt._backend = Failing(RuntimeError("CUDA out of memory"))  # type: ignore[assignment]
    for _ in range(questions.MAX_ATTEMPTS):
        followups.answer_waiting(rt)
    later = ask(rt, job, "Is there an effusion?")
    rt._backend = Recording()  # type: ignore[assignment]
    assert followups.answer_waiting(rt) == [later]
    assert question(rt, stuck)["state"] == "failed"
    assert question(rt, later)["state"] == "answered"


def test_the_database_holds_one_answering_question_per_job(rt: Runtime,
                                                            tmp_path: Path) -> None:
    job = new_job(rt, tmp_path)
    first_turns(rt, job)
    first, second = ask(rt, job, "Where?"), ask(rt, job, "Why?")
    with rt.db.session() as s:
        assert questions.claim_questions(s, "worker-a", 8) == [first]
    with rt.db.session() as s, pytest.raises(IntegrityError):
        s.execute(update(Question).where(Question.id == second).values(state="answering"))
        s.commit()


def test_two_workers_racing_on_one_job_answer_in_order_each_after_the_earlier_answer(
        rt: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Worker B reads the busy jobs before worker A's claim lands (the interleaving that
    used to answer two questions of one job at once): the database refuses B's claim."""
    job = new_job(rt, tmp_path)
    first_turns(rt, job)
    q1, q2 = ask(rt, job, "Where is the edema?"), ask(rt, job, "How large is the heart?")
    with rt.db.session() as s:
        assert questions.claim_questions(s, "worker-a", 8) == [q1]
    stale = questions.busy_jobs
    monkeypatch.setattr(questions, "busy_jobs", lambda _s: set())  # B's read, from before
    with rt.db.session() as s:
        assert questions.claim_questions(s, "worker-b", 8) == []  # q2 refused: q1 answering
    monkeypatch.setattr(questions, "busy_jobs", stale)
    with rt.db.session() as s:  # A answers q1 (its claim, its name)
        s.execute(update(Question).where(Question.id == q1).values(holder=rt.worker_name))
        s.commit()
    backend = rt.backend
    assert isinstance(backend, Recording)
    assert followups.answer(rt, [q1]) == [q1]
    assert followups.answer_waiting(rt) == [q2]  # then B's turn, after q1's answer
    asked = backend.requests[-1]
    texts = [t.text for t in asked.turns]
    assert any("Where is the edema?" in t for t in texts[:-1])  # q1, asked before
    assert texts[-2] == question(rt, q1)["reply_text"]  # q1's answer, just before q2
    assert "How large is the heart?" in texts[-1]  # q2 last


def test_quotas_answer_429_with_retry_after_and_the_limit(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from worker.ops.api import create_app

    rt = configure(load_settings(None, {}, data_dir=tmp_path / "data", api_token="t" * 32,
                                 max_open_questions_per_job=2,
                                 questions_per_reviewer_per_hour=3))
    rt._backend = Recording()  # type: ignore[assignment]
    jobs = [new_job(rt, tmp_path, f"cr{n}") for n in range(2)]
    for job in jobs:
        first_turns(rt, job)
    auth = {"Authorization": "Bearer " + "t" * 32}
    with TestClient(create_app(rt.settings, rt.db, lambda queue: 0)) as api:
        def post(job_id: int) -> Any:
            return api.post(f"/api/jobs/{job_id}/questions", headers=auth,
                            json={"question": "Where?"})

        assert [post(jobs[0].id).status_code for _ in range(2)] == [202, 202]
        over = post(jobs[0].id)  # a third open question on the job
        assert over.status_code == 429 and over.json()["limit"] == 2
        assert int(over.headers["Retry-After"]) > 0
        assert post(jobs[1].id).status_code == 202  # the caller's third this hour
        hourly = post(jobs[1].id)
        assert hourly.status_code == 429 and hourly.json()["limit"] == 3
        assert 0 < int(hourly.headers["Retry-After"]) <= 3601


def test_follow_ups_take_at_most_their_share_of_a_gpu_message(rt: Runtime,
                                                               tmp_path: Path) -> None:
    """Ten jobs with a question each: one GPU message answers share x batch of them
    (0.5 x 8 = 4), so the study that message is for is inferred right after."""
    jobs = [new_job(rt, tmp_path, f"cr{n}") for n in range(10)]
    for job in jobs:
        first_turns(rt, job)
    asked = [ask(rt, job, "Where?") for job in jobs]
    assert followups.share(rt) == 4
    first = followups.answer_waiting(rt)
    assert len(first) == 4 and first == asked[:4]  # oldest first
    assert followups.still_waiting(rt)
    rest = followups.answer_waiting(rt) + followups.answer_waiting(rt)
    assert rest == asked[4:]


FAULTS = Path(__file__).resolve().parent / "faults"  # sitecustomize: markers that fail


@pytest.mark.integration  # a real serve, dcmtk's storescu, PostgreSQL
def test_on_a_real_serve_each_failure_ends_the_question_failed_and_the_next_is_answered(
        serve_factory: Any, database_env: dict[str, str], tmp_path: Path) -> None:
    import os

    import httpx
    from pydicom.uid import generate_uid

    from tests.dicom_factory import make_cr
    from tests.peers import wait_until

    token = "operator-token-for-answering-0123456789"
    path = os.pathsep.join(p for p in (str(FAULTS), os.environ.get("PYTHONPATH", "")) if p)
    srv = serve_factory.new({**database_env, "CXR_API_TOKEN": token, "PYTHONPATH": path,
                             "CXR_MODEL_BACKEND": "mock"}).start()
    study = tmp_path / "cr.dcm"
    make_cr(generate_uid(), size=64, seed=41).save_as(study, enforce_file_format=True)
    assert srv.storescu(study).returncode == 0
    api = httpx.Client(base_url=f"http://127.0.0.1:{srv.api_port}",
                       headers={"Authorization": f"Bearer {token}"}, timeout=60)
    job = wait_until(lambda: next((j["job_id"] for j in api.get("/api/jobs").json()
                                   if j["state"] == "done"), None), "a done job")
    asked = {}
    for text in ("[oom] Where is the edema?", "[index] Which side?",
                 "[integrity] Any effusion?", "Is the heart enlarged?"):
        answer = api.post(f"/api/jobs/{job}/questions", json={"question": text})
        assert answer.status_code == 202, answer.text
        asked[text.split()[0]] = answer.json()["question_id"]

    def ended() -> dict[str, dict[str, Any]] | None:
        views = {k: api.get(f"/api/questions/{q}").json() for k, q in asked.items()}
        return views if all(v["state"] in ("answered", "failed")
                            for v in views.values()) else None

    views = wait_until(ended, "every question answered or failed", timeout=300)
    for marker, error in (("[oom]", "RuntimeError"), ("[index]", "IndexError"),
                          ("[integrity]", "IntegrityError")):
        view = views[marker]
        assert view["state"] == "failed", view
        assert error in view["error"] and "tried 3 times" in view["error"], view["error"]
    assert views["Is"]["state"] == "answered" and "MOCK" in views["Is"]["answer"]
    thread = api.get(f"/api/jobs/{job}/questions").json()
    assert [q["state"] for q in thread["questions"]] == ["failed"] * 3 + ["answered"]
