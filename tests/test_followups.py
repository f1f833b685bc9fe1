"""Follow-up questions (issue 25): routing, the conversation sent, the answers stored, and
end to end on a real ``serve`` with each backend.

The fast tier checks the pure parts (``models.followup``) and the worker's follow-up
stage in this process on SQLite with a recording backend: what the model is sent (the
image once, every earlier turn verbatim, the new question last), that no earlier turn is
generated again, that a report request reuses the report turn, and that a question asked
before the first turns waits for them.  The integration tests run ``serve`` as a
subprocess (mock, the tiny random Qwen through the local backend, the vLLM stand-in
through openai), ask over HTTP and with ``cxr-gateway ask``, and check what reached
the model; one asks while a few hundred batch jobs wait on a slow mock.
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from models.backend import BackendInfo, Generation, ModelRequest, Turn
from models.followup import (
    ANSWER,
    ANSWER_PREFIX,
    EXACT,
    OFF_TOPIC,
    REPORT,
    followup_request,
    is_off_topic,
    is_report_request,
    read_reply,
    route,
)
from models.mock import MOCK_NOTICE, MockBackend
from models.prompts import DEFAULT_PROMPT, REPORT_PROMPT
from tests import peers
from tests.test_tasks import queued_job
from worker.pipeline import followups
from worker.pipeline import stages as pipeline
from worker.runtime import Runtime, configure
from worker.settings import load_settings
from worker.store import conversations, questions
from worker.store.db import ConversationTurn, Job, Question, now

REFUSAL = "I'm sorry, I'm specialized in medical chest X-ray analysis."


# -- routing (pure) -------------------------------------------------------------------

@pytest.mark.parametrize("question", [
    "Write a structured report.", "write a report", "Can you generate a radiology report?",
    "report please", "Please create a chest X-ray report", "Now draft the structured report"])
def test_report_requests_and_close_variants_are_the_report_route(question: str) -> None:
    assert is_report_request(question)
    reused = route(question, has_report_turn=True)
    assert (reused.route, reused.reuse_report, reused.prompt) == (REPORT, True, "")
    fresh = route(question, has_report_turn=False)
    assert (fresh.route, fresh.reuse_report, fresh.prompt) == (REPORT, False, REPORT_PROMPT)


@pytest.mark.parametrize("question", [
    "Where do you see the lesion?", "Provide a differential diagnosis.",
    "Is there a pleural effusion?", "How many tubes are there?",
    "Does the report mention edema?", "Why did you call it cardiomegaly?"])
def test_a_question_about_the_image_is_sent_as_asked_and_answered_with_the_prefix(
        question: str) -> None:
    chosen = route(question, has_report_turn=True)
    assert (chosen.route, chosen.prompt) == (ANSWER, question)
    reply = read_reply("<think> The left base is blunted. </think>\n<answer> At the left "
                       "base. </answer>", chosen.route)
    assert reply.answer == f"{ANSWER_PREFIX} At the left base."
    assert reply.reasoning == "The left base is blunted."
    assert reply.status == "answered"


@pytest.mark.parametrize("question", ["What is the capital of France?", "asdfghjkl qwerty",
                                      "Who won the world cup in 2018?"])
def test_an_off_topic_question_goes_to_the_model_and_its_own_refusal_is_shown(
        question: str) -> None:
    assert is_off_topic(question)
    chosen = route(question, has_report_turn=False)
    assert (chosen.route, chosen.prompt) == (OFF_TOPIC, question)  # we never refuse for it
    reply = read_reply(REFUSAL, chosen.route)
    assert reply.status == "refused" and reply.refused
    assert reply.answer == REFUSAL  # verbatim, no "Answer:" on a refusal


def test_an_exact_prompt_is_sent_alone() -> None:
    chosen = route("call the model with this prompt exactly: Examine the chest X-ray.", True)
    assert (chosen.route, chosen.prompt) == (EXACT, "Examine the chest X-ray.")


def test_routing_refuses_an_empty_question() -> None:
    with pytest.raises(ValueError, match="empty"):
        route("   ", has_report_turn=False)


def test_replies_are_read_like_every_turn() -> None:
    prose = read_reply("<think> Reasoning. </think>\nBased on the image: edema.", ANSWER)
    assert (prose.status, prose.answer) == ("answered", "Answer: Based on the image: edema.")
    cut = read_reply("<think> still thinking", ANSWER, generated_tokens=50, max_new_tokens=50)
    assert cut.status == "truncated" and cut.truncated
    cut_answer = read_reply("<think> a </think> <answer> Left base", ANSWER)
    assert cut_answer.status == "truncated"
    mock = read_reply("<think> x </think><answer> y </answer>", ANSWER, is_mock=True)
    assert mock.status == "mock"
    report = read_reply("<think> r </think>\nFINDINGS: Lungs: clear.", REPORT)
    assert report.answer == "FINDINGS: Lungs: clear." and report.status == "answered"


def test_the_follow_up_request_is_the_stored_turns_then_the_question() -> None:
    stored = (Turn("user", DEFAULT_PROMPT), Turn("assistant", "<think> a </think> <answer> "
                                                              "Edema </answer>"),
              Turn("user", REPORT_PROMPT), Turn("assistant", "FINDINGS: x"))
    req = followup_request(b"png", stored, "Where is the edema?")
    assert req.turns[:4] == stored and req.turns[-1] == Turn("user", "Where is the edema?")
    assert req.image_png == b"png"
    with pytest.raises(ValueError):
        followup_request(b"png", stored[:3], "Why?")  # must end with a reply
    with pytest.raises(ValueError):
        followup_request(b"png", (), "Why?")


def test_every_backend_puts_the_image_in_the_first_turn_only() -> None:
    from models.local import LocalBackend
    from models.openai_compat import OpenAIBackend

    stored = (Turn("user", DEFAULT_PROMPT), Turn("assistant", "A"),
              Turn("user", REPORT_PROMPT), Turn("assistant", "B"))
    req = followup_request(b"\x89PNG", stored, "Where?")
    local = LocalBackend.messages(req)
    assert [sum(p["type"] == "image" for p in m["content"]) for m in local] == [1, 0, 0, 0, 0]
    assert [m["content"][-1]["text"] for m in local] == [t.text for t in req.turns]
    remote = OpenAIBackend.messages(req)
    assert remote[0]["content"][0]["type"] == "image_url"
    assert [m["content"] for m in remote[1:]] == ["A", REPORT_PROMPT, "B", "Where?"]


def test_the_mock_answers_a_follow_up_with_a_labelled_mock_reply() -> None:
    mock = MockBackend()
    req = followup_request(b"png", (Turn("user", DEFAULT_PROMPT), Turn("assistant", "x")),
                           "Where?")
    (gen,) = mock.generate([req])
    assert MOCK_NOTICE in gen.text and "MOCK reply" in gen.text
    assert read_reply(gen.text, ANSWER, is_mock=True).status == "mock"


# -- the worker's follow-up stage, in this process -----------------------------------------

class Recording:
    """A backend that answers like the mock and keeps every request it was given."""

    def __init__(self, labels: Sequence[str] = ("Edema",)) -> None:
        self.inner = MockBackend(labels=labels)
        self.requests: list[ModelRequest] = []

    @property
    def info(self) -> BackendInfo:
        return self.inner.info

    def generate(self, requests: Sequence[ModelRequest]) -> list[Generation]:
        self.requests += requests
        return self.inner.generate(requests)


@pytest.fixture
def rt(tmp_path: Path) -> Runtime:
    runtime = configure(load_settings(None, {}, data_dir=tmp_path / "data"))
    runtime._backend = Recording()  # type: ignore[assignment]
    return runtime


def recorder(rt: Runtime) -> Recording:
    backend = rt.backend
    assert isinstance(backend, Recording)
    return backend


def new_job(rt: Runtime, tmp_path: Path, name: str = "cr") -> Job:
    return queued_job(rt, tmp_path, name)


def first_turns(rt: Runtime, job: Job) -> None:
    """prepare + the two inference turns, and the conversation recorded as tasks.infer does."""
    assert pipeline.prepare(rt, job.id, job.version)
    assert pipeline.infer_batch(rt, job.id, job.version) == [(job.id, job.version)]
    with rt.db.session() as s:
        assert conversations.record_for_jobs(s, [job.id]) == 1


def ask(rt: Runtime, job: Job, text: str, who: str = "dr-a") -> int:
    with rt.db.session() as s:
        return followups.ask(s, job.id, text, who).id


def question(rt: Runtime, qid: int) -> dict[str, Any]:
    with rt.db.session() as s:
        q = s.get(Question, qid)
        assert q is not None
        return questions.question_view(q)


def test_three_follow_ups_are_each_asked_after_every_earlier_turn_verbatim(
        rt: Runtime, tmp_path: Path) -> None:
    job = new_job(rt, tmp_path)
    first_turns(rt, job)
    backend = recorder(rt)
    assert len(backend.requests) == 2  # findings, then the report (the mock named Edema)
    findings, report = backend.requests
    with rt.db.session() as s:
        row = s.get(Job, job.id)
        assert row is not None and row.model_input
        image = row.model_input
    asked = ["Where is the edema?", "Provide a differential diagnosis.", "Why?"]
    ids = [ask(rt, job, text) for text in asked]
    assert followups.answer_waiting(rt) == ids  # one job: one at a time, oldest first
    follow = backend.requests[2:]
    assert len(follow) == 3  # no earlier turn was generated again
    earlier = [*report.turns]
    gens = MockBackend(labels=("Edema",)).generate([report])
    earlier.append(Turn("assistant", gens[0].text))
    for req, text in zip(follow, asked, strict=True):
        assert req.image_png == image  # the stored model input, sent with the first turn
        assert list(req.turns[:-1]) == earlier  # every earlier turn, verbatim, in order
        assert req.turns[-1] == Turn("user", text)  # the new question last
        view = question(rt, ids[asked.index(text)])
        assert view["state"] == "answered" and view["status"] == "mock"
        assert view["asked_by"] == "dr-a" and view["answered_at"]
        earlier += [req.turns[-1], Turn("assistant", view["reply_text"])]
    assert findings.turns == (Turn("user", DEFAULT_PROMPT),)
    with rt.db.session() as s:
        row = s.get(Job, job.id)
        assert row is not None
        t = questions.thread(s, row)
    assert [turn["kind"] for turn in t["turns"]] == ["findings"] * 2 + ["report"] * 2 + \
        ["followup"] * 6
    assert t["turns"][0]["image"].startswith("model_input sha256:")
    assert all(turn["image"] is None for turn in t["turns"][1:])
    assert [turn["text"] for turn in t["turns"]] == [turn.text for turn in earlier]


def test_a_report_request_reuses_the_report_turn(rt: Runtime, tmp_path: Path) -> None:
    job = new_job(rt, tmp_path)
    first_turns(rt, job)
    before = len(recorder(rt).requests)
    qid = ask(rt, job, "Write a structured report.")
    assert followups.answer_waiting(rt) == [qid]
    assert len(recorder(rt).requests) == before  # nothing generated
    view = question(rt, qid)
    assert view["route"] == "report" and view["reused_report_turn"] == 3
    assert "IMPRESSION" in view["answer"]


def test_a_report_request_without_a_report_turn_asks_the_report_prompt(
        rt: Runtime, tmp_path: Path) -> None:
    rt._backend = Recording(labels=())  # type: ignore[assignment]  # no labels: no report turn
    job = new_job(rt, tmp_path)
    assert pipeline.prepare(rt, job.id, job.version)
    assert pipeline.infer_batch(rt, job.id, job.version)
    qid = ask(rt, job, "write a radiology report")
    assert followups.answer_waiting(rt) == [qid]
    last = recorder(rt).requests[-1]
    assert [t.text for t in last.turns][0::2] == [DEFAULT_PROMPT, REPORT_PROMPT]
    assert question(rt, qid)["state"] == "answered"


def test_a_question_asked_before_the_first_turns_waits_for_them(rt: Runtime,
                                                                tmp_path: Path) -> None:
    job = new_job(rt, tmp_path)
    qid = ask(rt, job, "Is there an effusion?")
    assert followups.answer_waiting(rt) == []  # no reading yet: it waits, nothing runs
    assert question(rt, qid)["state"] == "waiting"
    assert recorder(rt).requests == []
    with rt.db.session() as s:
        row = s.get(Job, job.id)
        assert row is not None
        assert questions.thread(s, row)["questions"][0]["waiting_for"] == \
            "the job's first turns"
    first_turns(rt, job)
    assert followups.answer_waiting(rt) == [qid]
    req = recorder(rt).requests[-1]
    assert len(req.turns) == 5 and req.turns[-1].text == "Is there an effusion?"


def test_a_question_on_a_job_that_failed_without_a_reading_fails_with_the_reason(
        rt: Runtime, tmp_path: Path) -> None:
    job = new_job(rt, tmp_path)
    pipeline.fail(rt, job.id, job.version, "conversion failed: test")
    qid = ask(rt, job, "Why?")
    assert followups.answer_waiting(rt) == []
    view = question(rt, qid)
    assert view["state"] == "failed" and "failed without a result" in view["error"]


def test_questions_on_several_jobs_go_to_the_model_as_one_batch(rt: Runtime,
                                                                 tmp_path: Path) -> None:
    jobs_ = [new_job(rt, tmp_path, f"cr{i}") for i in range(3)]
    for job in jobs_:
        first_turns(rt, job)
    calls: list[int] = []
    inner = recorder(rt).generate

    def counting(requests: Sequence[ModelRequest]) -> list[Generation]:
        calls.append(len(requests))
        return inner(requests)

    recorder(rt).generate = counting  # type: ignore[method-assign]
    ids = [ask(rt, job, "Where?") for job in jobs_]
    assert sorted(followups.answer_waiting(rt)) == sorted(ids)
    assert calls == [3]


def test_a_question_held_by_a_dead_process_is_answered_again(rt: Runtime,
                                                             tmp_path: Path) -> None:
    job = new_job(rt, tmp_path)
    first_turns(rt, job)
    qid = ask(rt, job, "Where?")
    with rt.db.session() as s:
        assert questions.claim_questions(s, "gone-1@nowhere", 8) == [qid]
    assert followups.answer_waiting(rt) == [qid]
    with rt.db.session() as s:
        n = s.scalar(select(func.count()).select_from(ConversationTurn))
    assert n == 6  # four first turns, one question and its answer: none twice


def test_the_question_refuses_empty_and_unknown_jobs(rt: Runtime, tmp_path: Path) -> None:
    job = new_job(rt, tmp_path)
    with rt.db.session() as s, pytest.raises(questions.QuestionRefused, match="empty"):
        followups.ask(s, job.id, "  ", "x")
    with rt.db.session() as s, pytest.raises(questions.QuestionRefused, match="no job"):
        followups.ask(s, 999, "Why?", "x")


def test_the_http_api_takes_a_question_and_shows_the_thread(rt: Runtime,
                                                            tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from worker.ops.api import create_app
    from worker.ops.api.auth import api_token

    job = new_job(rt, tmp_path)
    first_turns(rt, job)
    token = api_token(rt.settings)
    with TestClient(create_app(rt.settings, rt.db, lambda queue: 0)) as client:
        assert client.post(f"/api/jobs/{job.id}/questions",
                           json={"question": "Where?"}).status_code == 401
        auth = {"Authorization": f"Bearer {token}"}
        r = client.post(f"/api/jobs/{job.id}/questions", json={"question": "Where?"},
                        headers=auth)
        assert r.status_code == 202, r.text
        qid = r.json()["question_id"]
        assert r.json()["asked_by"] == "operator" and r.json()["state"] == "waiting"
        assert client.post("/api/jobs/999/questions", json={"question": "Where?"},
                           headers=auth).status_code == 404
        assert client.post(f"/api/jobs/{job.id}/questions", json={"question": " "},
                           headers=auth).status_code == 422
        assert followups.answer_waiting(rt) == [qid]
        t = client.get(f"/api/jobs/{job.id}/questions", headers=auth).json()
        assert t["questions"][0]["state"] == "answered"
        assert len(t["turns"]) == 6
        one = client.get(f"/api/questions/{qid}", headers=auth).json()
        assert one["answer"].startswith("MOCK reply") or "MOCK" in one["reply_text"]
        metrics = client.get("/metrics").text
    assert "cxr_questions_asked_total 1.0" in metrics
    assert "cxr_questions_answered_total 1.0" in metrics
    assert 'cxr_questions{state="waiting"} 0.0' in metrics


# -- a real serve, each backend --------------------------------------------------------------

API_TIMEOUT = 300.0


def http(srv: Any, method: str, path: str, body: dict[str, Any] | None = None,
         token: str | None = None) -> tuple[int, Any]:
    tok = token or (srv.data_dir / "api-token").read_text().strip()
    req = urllib.request.Request(
        f"http://127.0.0.1:{srv.api_port}{path}", method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {tok}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read().decode())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read().decode() or "{}")


def wait_until(check: Callable[[], Any], what: str, timeout: float = API_TIMEOUT) -> Any:
    return peers.wait_until(check, what, timeout)


def done_job(srv: Any, rg1: Path) -> dict[str, Any]:
    sent = srv.storescu(rg1)
    assert sent.returncode == 0, sent.stderr

    def done() -> dict[str, Any] | None:
        code, rows = http(srv, "GET", "/api/jobs")
        return next((r for r in rows if r["state"] == "done"), None) if code == 200 else None

    return wait_until(done, "the RG1 job done")


def answered(srv: Any, qid: int) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        code, q = http(srv, "GET", f"/api/questions/{qid}")
        return q if code == 200 and q["state"] in ("answered", "failed") else None

    return wait_until(check, f"question {qid} answered")


def cli(srv: Any, *args: str) -> subprocess.CompletedProcess[str]:
    from tests.peers import BIN

    return subprocess.run([str(BIN / "cxr-gateway"), *args, "--data-dir", str(srv.data_dir)],
                          capture_output=True, text=True, timeout=API_TIMEOUT,
                          env={**os.environ, **srv.env})


QUESTIONS = ("Where do you see the abnormality?", "Provide a differential diagnosis.",
             "What is the capital of France?")


@pytest.mark.integration
@pytest.mark.parametrize("backend", ["mock", "local", "openai"])
def test_follow_ups_on_a_real_serve(backend: str, request: pytest.FixtureRequest,
                                    serve_factory: Any, rg1: Path) -> None:
    """Three follow-ups over HTTP and one with ``cxr-gateway ask`` on a done job: each
    answered; the model got the image once, every earlier turn verbatim, the question
    last; nothing earlier was generated again."""
    from tests.peers import backend_env

    standin = None
    if backend == "openai":
        standin = request.getfixturevalue("vllm_standin")
        env = backend_env("openai", standin_url=standin.url)
    elif backend == "local":
        env = backend_env("local", checkpoint=request.getfixturevalue("tiny_qwen_labels"))
    else:
        env = {**backend_env("mock"), "CXR_MOCK_LABELS": "Edema"}
    srv = serve_factory.new(env).start()
    job = done_job(srv, rg1)
    jid = job["job_id"]
    code, thread0 = http(srv, "GET", f"/api/jobs/{jid}/questions")
    assert code == 200 and [t["kind"] for t in thread0["turns"]] == \
        ["findings", "findings", "report", "report"]
    ids = []
    for text in QUESTIONS:
        code, q = http(srv, "POST", f"/api/jobs/{jid}/questions", {"question": text})
        assert code == 202, q
        ids.append(q["question_id"])
    views = [answered(srv, qid) for qid in ids]
    assert [v["state"] for v in views] == ["answered"] * 3, views
    assert [v["asked_by"] for v in views] == ["operator"] * 3
    refused = cli(srv, "ask", str(jid), "Is there a pleural effusion?", "--as", "dr-b")
    assert refused.returncode != 0 and "no live token has that name" in refused.stderr
    assert cli(srv, "tokens", "add", "dr-b").returncode == 0
    out = cli(srv, "ask", str(jid), "Is there a pleural effusion?", "--json", "--as", "dr-b")
    assert out.returncode == 0, out.stderr
    last = json.loads(out.stdout)
    assert last["state"] == "answered" and last["asked_by"] == "dr-b"
    assert last["answer"]
    plain = cli(srv, "thread", str(jid))
    assert plain.returncode == 0 and "Is there a pleural effusion?" in plain.stdout
    code, t = http(srv, "GET", f"/api/jobs/{jid}/questions")
    turns = t["turns"]
    assert len(turns) == 4 + 2 * 4 and turns[:4] == thread0["turns"]  # first turns kept
    assert [x["text"] for x in turns[4::2]] == [*QUESTIONS, "Is there a pleural effusion?"]
    if backend == "mock":
        assert all(v["status"] == "mock" for v in views)
    else:
        assert views[0]["answer"].startswith("Answer:")  # about the image: the prefix
        # off-topic: sent as asked, shown as the model said it (its refusal, if it refuses)
        assert views[2]["route"] == "off_topic"
        assert not views[2]["answer"].startswith("Answer:")
    if standin is not None:
        chats = [r for r in standin.requests if r.path.endswith("/chat/completions")]
        assert [r.turn for r in chats] == ["findings", "report"] + ["followup"] * 4
        for n, rec in enumerate(chats[2:]):
            msgs = rec.messages
            images = [p for m in msgs if isinstance(m["content"], list)
                      for p in m["content"] if p.get("type") == "image_url"]
            assert len(images) == 1 and msgs[0]["content"][0]["type"] == "image_url"
            assert rec.image_sha256 == chats[0].image_sha256
            texts = [m["content"][-1]["text"] if isinstance(m["content"], list)
                     else m["content"] for m in msgs]
            assert texts == [x["text"] for x in turns[:4 + 2 * n + 1]]  # verbatim, in order
    else:
        with_rows = t["questions"]
        assert all(q["reply_text"] == turns[5 + 2 * i]["text"]
                   for i, q in enumerate(with_rows))
    if backend == "local":  # the forced tiny Qwen: a reply "R" only when it saw the "F"
        assert all(turn["text"].strip() for turn in turns[5::2])


@pytest.mark.integration
def test_the_local_backend_receives_the_image_once_and_every_turn_verbatim(
        tiny_qwen_labels: Path) -> None:
    """The local backend's recorded inputs: the chat template text it tokenised and the
    images it gave the processor, for a follow-up after both first turns."""
    from models.local import LocalBackend, LocalOptions

    backend = LocalBackend(LocalOptions(model_id=str(tiny_qwen_labels), device="cpu",
                                        allow_cpu=True, local_files_only=True))
    seen: list[tuple[list[str], int]] = []
    real = backend.processor.__class__.__call__

    def recording(self: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append((list(kwargs.get("text") or []), len(kwargs.get("images") or [])))
        return real(self, *args, **kwargs)

    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (224, 224), (90, 90, 90)).save(buf, "PNG")
    from models.study import run_study

    first = run_study(backend, buf.getvalue())
    assert first.report is not None
    stored = (Turn("user", DEFAULT_PROMPT), Turn("assistant", first.findings.text),
              Turn("user", REPORT_PROMPT), Turn("assistant", first.report.text))
    cls = backend.processor.__class__
    cls.__call__ = recording  # type: ignore[method-assign]
    try:
        (gen,) = backend.generate([followup_request(buf.getvalue(), stored, "Where?")])
    finally:
        cls.__call__ = real  # type: ignore[method-assign]
    assert len(seen) == 1
    (text,), images = seen[0]
    assert images == 1 and text.count("<|vision_start|>") == 1
    positions = [text.index(turn.text) for turn in (*stored, Turn("user", "Where?"))]
    assert positions == sorted(positions)  # every turn verbatim, in order, the question last
    assert text.rstrip().endswith("assistant") and "Where?" in text[positions[-2]:]
    assert gen.text.strip()


@pytest.mark.integration
def test_a_follow_up_is_answered_before_a_batch_backlog_drains(serve_factory: Any,
                                                               tmp_path: Path,
                                                               rg1: Path) -> None:
    """A few hundred batch studies wait on a slow mock; a reviewer's question on a done job
    is answered while most of them still wait."""
    import numpy as np
    from PIL import Image

    srv = serve_factory.new({"CXR_MODEL_BACKEND": "mock", "CXR_MOCK_LATENCY_SECONDS": "0.1",
                             "CXR_GPU_BATCH_SIZE": "4"}).start()
    job = done_job(srv, rg1)
    folder = tmp_path / "images"
    folder.mkdir()
    rows = ["study_id,path"]
    rng = np.random.default_rng(0)
    for i in range(300):
        path = folder / f"s{i:03d}.png"
        Image.fromarray(rng.integers(0, 255, (64, 64), dtype=np.uint8)).save(path)
        rows.append(f"s{i:03d},{path}")
    (folder / "index.csv").write_text("\n".join(rows) + "\n")
    from tests.peers import BIN

    batch = subprocess.Popen(
        [str(BIN / "cxr-gateway"), "batch", "run", str(folder / "index.csv"), "--name",
         "backlog", "--chunk", "400", "--no-progress", "--data-dir", str(srv.data_dir)],
        env={**os.environ, **srv.env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        from worker.store.db import Database

        db = Database(f"sqlite:///{srv.data_dir / 'gateway.db'}")

        def waiting_batch() -> int:
            with db.session() as s:
                return int(s.scalar(select(func.count()).select_from(Job).where(
                    Job.batch_run_id.is_not(None), Job.state.in_(
                        ("queued", "preparing", "prepared", "inferring")))) or 0)

        wait_until(lambda: waiting_batch() >= 200, "a backlog of 200 batch studies")
        code, q = http(srv, "POST", f"/api/jobs/{job['job_id']}/questions",
                       {"question": "Where is the abnormality?"})
        assert code == 202
        view = answered(srv, q["question_id"])
        left = waiting_batch()
        assert view["state"] == "answered"
        assert left > 0, "the backlog drained before the question was answered"
        print(f"question answered with {left} batch studies still waiting")
    finally:
        batch.kill()
        batch.wait(timeout=30)


# -- the addendum SR -------------------------------------------------------------------------

def test_the_addendum_sr_references_the_first_sr_and_the_image_and_is_marked() -> None:
    from pydicom import dcmread

    from dicom_gateway.documents import marks
    from dicom_gateway.documents.addendum import (
        AddendumContent,
        ThreadItem,
        build_addendum,
        referenced_first_sr,
    )
    from dicom_gateway.documents.draft import Algorithm, SRIdentity
    from dicom_gateway.documents.series import Kind
    from dicom_gateway.documents.sr import build_sr
    from tests.peers import sample_file
    from worker.pipeline.reporting import draft_from_result

    source = dcmread(sample_file("RG1_UNCR.dcm"), stop_before_pixels=True)
    result = {"status": "ok", "labels": ["Edema"], "reasoning": "r", "model_id": "m",
              "model_revision": "x", "backend": "local", "prompt": DEFAULT_PROMPT,
              "is_mock": False, "answer": "Edema"}
    identity = SRIdentity.derive("seed", source.StudyInstanceUID, "job-1", 1, "local|m@x",
                                 "CXR Reason Gateway", "v", "site")
    first = build_sr(source, draft_from_result(result, "mimic"), identity)
    content = AddendumContent((ThreadItem("dr-a", "2026-01-01T00:00:00Z", "Where?",
                                          "Answer: left base", "Blunted angle.", "answered"),),
                              Algorithm("NV-Reason-CXR-3B", "hf:m@x", "NVIDIA"), is_mock=False)
    add = build_addendum(source, first, content, "question-1", ordinal=1)
    again = build_addendum(source, first, content, "question-1", ordinal=1)
    assert add.SOPInstanceUID == again.SOPInstanceUID != first.SOPInstanceUID
    assert add.StudyInstanceUID == source.StudyInstanceUID
    assert add.SeriesInstanceUID != first.SeriesInstanceUID
    refs = referenced_first_sr(add)
    assert str(first.SOPInstanceUID) in refs and str(source.SOPInstanceUID) in refs
    assert (add.PreliminaryFlag, add.VerificationFlag, add.CompletionFlag) == \
        ("PRELIMINARY", "UNVERIFIED", "PARTIAL")
    assert add.SeriesDescription == marks.series_description(Kind.ADDENDUM, is_mock=False)
    assert add.ContentQualification == "RESEARCH"
    texts = [str(getattr(item, "TextValue", "")) for item in
             add.ContentSequence[-1].ContentSequence]
    assert marks.DISCLAIMER in texts and "Answer: left base" in texts
    assert any("asked by dr-a" in t and "Where?" in t for t in texts)
    assert not hasattr(add, "PredecessorDocumentsSequence")  # adds to, does not replace


@pytest.mark.integration
def test_an_addendum_sr_is_delivered_like_the_first_and_passes_dciodvfy(
        serve_factory: Any, storescp: Any, rg1: Path) -> None:
    from pydicom import dcmread

    from dicom_gateway.documents.addendum import referenced_first_sr
    from tests.peers import dciodvfy_errors, pixelmed_errors

    srv = serve_factory.new({"CXR_MODEL_BACKEND": "mock", "CXR_MOCK_LABELS": "Edema",
                             "CXR_DESTINATIONS": storescp.destination}).start()
    job = done_job(srv, rg1)
    (first_path,) = storescp.wait_files(1)
    first = dcmread(first_path)
    out = cli(srv, "ask", str(job["job_id"]), "Where is the edema?", "--to-pacs", "--json")
    assert out.returncode == 0, out.stdout + out.stderr
    view = json.loads(out.stdout)
    assert view["addendum"]["state"] == "written", view
    files = storescp.wait_files(2)
    (add_path,) = [p for p in files if p != first_path]
    add = dcmread(add_path)
    assert str(add.SOPInstanceUID) == view["addendum"]["sop_instance_uid"]
    assert str(first.SOPInstanceUID) in referenced_first_sr(add)
    assert add.StudyInstanceUID == first.StudyInstanceUID
    assert "MOCK" in add.SeriesDescription  # the mock answered: said so, as on the first
    assert dciodvfy_errors(add_path) == []
    assert pixelmed_errors(add_path) == []


@pytest.mark.integration
def test_a_question_asked_while_serve_is_down_is_answered_after_its_restart(
        serve_factory: Any, rg1: Path) -> None:
    """serve empties the embedded queue at start: a waiting question is woken all the same."""
    srv = serve_factory.new({"CXR_MODEL_BACKEND": "mock"}).start()
    job = done_job(srv, rg1)
    srv.stop()
    out = cli(srv, "ask", str(job["job_id"]), "Is there a pneumothorax?", "--no-wait",
              "--json")
    assert out.returncode == 0, out.stderr
    qid = json.loads(out.stdout)["question_id"]
    srv.start()
    assert answered(srv, qid)["state"] == "answered"


@pytest.mark.integration  # a Gradio-protocol server on loopback
def test_the_hf_space_backend_sends_a_follow_up_as_the_chat_with_its_history() -> None:
    from models.hf_space import HFSpaceBackend
    from tests.protocol_servers import gradio_space_server

    srv = gradio_space_server(["<think> The angle is blunted. </think>\n",
                               "<answer> At the left base. </answer>"])
    stored = (Turn("user", DEFAULT_PROMPT),
              Turn("assistant", "<think> a </think>\n<answer> Pleural Effusion </answer>"),
              Turn("user", REPORT_PROMPT), Turn("assistant", "FINDINGS: Lungs: effusion."))
    try:
        (gen,) = HFSpaceBackend(srv.url, timeout=10).generate(
            [followup_request(b"\x89PNG-bytes", stored, "Where is the effusion?")])
    finally:
        srv.close()
    uploads = [r for r in srv.requests if r[1] == "/gradio_api/upload"]
    assert len(uploads) == 1  # the image once
    join = next(r for r in srv.requests if r[1] == "/gradio_api/queue/join")
    prompt, history, _image = json.loads(join[2])["data"]
    assert prompt == "Where is the effusion?"  # the new question last
    assert history == [{"role": t.role, "content": t.text} for t in stored]  # verbatim
    reply = read_reply(gen.text, ANSWER)
    assert (reply.answer, reply.status) == ("Answer: At the left base.", "answered")


def test_an_open_question_whose_wake_up_was_lost_gets_one_from_the_reconciler(
        rt: Runtime, tmp_path: Path) -> None:
    """A question acknowledged (202) on an idle cluster whose message was lost (a Redis
    restart without persistence) is not left waiting: once it is older than
    ``requeue_seconds`` and the gpu queue is empty, the reconciler wakes a GPU worker."""
    from sqlalchemy import update

    from worker.pipeline.reconciler import Publishers, Reconciler

    job = new_job(rt, tmp_path)
    first_turns(rt, job)
    qid = ask(rt, job, "Where is the edema?")
    woken: list[int] = []
    nothing = Publishers(prepare=lambda *_: None, infer=lambda *_: None,
                         report=lambda *_: None, question=woken.append)
    depth = {"gpu": 0}
    rec = Reconciler(rt.db, rt.settings, nothing, lambda q: depth.get(q, 0))
    assert not rec.run().questions_woken and woken == []  # just asked: its message is due
    with rt.db.session() as s:
        s.execute(update(Question).where(Question.id == qid).values(
            asked_at=now() - rt.settings.requeue_seconds - 1))
        s.commit()
    depth["gpu"] = 3  # messages wait on the gpu queue: they answer it first
    rec._last_lost_check = 0.0
    assert not rec.run().questions_woken and woken == []
    depth["gpu"] = 0
    rec._last_lost_check = 0.0
    assert rec.run().questions_woken and woken == [0]
    followups.answer_waiting(rt)  # the woken worker answers it; nothing is open any more
    assert question(rt, qid)["state"] == "answered"
    rec._last_lost_check = 0.0
    assert not rec.run().questions_woken and woken == [0]
