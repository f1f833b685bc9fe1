"""Addenda go through the first SR's deliveries (issue 30): one ``deliveries`` row per
destination, the same retry rule scheduled in the database (no task sleeps), each row
claimed before it is sent (a redelivered message never sends twice), the reconciler
publishing a due row again; addenda of one job numbered in order in a series of their own."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread

from dicom_gateway.documents.series import Kind, series_number
from dicom_gateway.transfer.sender import SendOutcome
from tests.test_tasks import queued_job
from worker.pipeline import addenda, claims, followups
from worker.pipeline import stages as pipeline
from worker.pipeline.reconciler import Publishers, Reconciler
from worker.runtime import Runtime, configure
from worker.settings import load_settings
from worker.store import conversations, deliveries, questions
from worker.store.db import Delivery, Job, Question, now

PACS = "PACS@127.0.0.1:9"


@pytest.fixture
def rt(tmp_path: Path) -> Runtime:
    return configure(load_settings(None, {}, data_dir=tmp_path / "data", destinations=PACS,
                                   mock_labels="Edema", retry_backoff_seconds=60.0))


class Peer:
    """Stands in for the sender: answers each send from a script, counts what was sent."""

    def __init__(self, *answers: str) -> None:
        self.answers = list(answers)
        self.sent: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, datasets: list[Any], dest: Any, _ae: str) -> SendOutcome:
        with self.lock:
            self.sent.extend(str(ds.SOPInstanceUID) for ds in datasets)
            answer = self.answers.pop(0) if self.answers else "ok"
        if answer == "ok":
            return SendOutcome(str(dest), ok=True, permanent=False, detail="stored")
        return SendOutcome(str(dest), ok=False, permanent=answer == "reject", detail=answer)


def done_job(rt: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Job:
    """A job through every stage, its first SR delivered to PACS."""
    job = queued_job(rt, tmp_path)
    assert pipeline.prepare(rt, job.id, job.version)
    assert pipeline.infer_batch(rt, job.id, job.version) == [(job.id, job.version)]
    with rt.db.session() as s:
        conversations.record_for_jobs(s, [job.id])
    first = Peer()
    monkeypatch.setattr("worker.pipeline.delivery.send_to", first)
    assert pipeline.report(rt, job.id, job.version)
    pipeline.deliver(rt, job.id, job.version)
    with rt.db.session() as s:
        row = s.get(Job, job.id)
        assert row is not None and row.state == "done", row.state
        return row


def answered_question(rt: Runtime, job: Job, text: str) -> int:
    with rt.db.session() as s:
        qid = followups.ask(s, job.id, text, "dr-a", to_pacs=True).id
        q = s.get(Question, qid)
        assert q is not None
        q.state, q.answer, q.status, q.answered_at = questions.ANSWERED, "Answer: x", \
            "answered", now()
        s.commit()
    return qid


def rows_of(rt: Runtime, qid: int) -> list[Delivery]:
    with rt.db.session() as s:
        return list(s.query(Delivery).filter(
            Delivery.document == deliveries.addendum_document(qid)).all())


def state_of(rt: Runtime, qid: int) -> str:
    with rt.db.session() as s:
        q = s.get(Question, qid)
        assert q is not None
        return q.addendum


def test_a_transient_failure_is_scheduled_not_slept_and_lands_once_when_due(
        rt: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    job = done_job(rt, tmp_path, monkeypatch)
    qid = answered_question(rt, job, "Where is the edema?")
    peer = Peer("association rejected (transient)")
    monkeypatch.setattr(addenda, "send_to", peer)
    slept: list[float] = []
    monkeypatch.setattr("time.sleep", slept.append)

    assert addenda.write_and_send(rt, qid) == "sending"
    assert slept == [] and len(peer.sent) == 1  # one attempt, no wait inside the task
    (row,) = rows_of(rt, qid)
    assert (row.state, row.attempts, row.holder) == ("retrying", 1, "")
    assert row.next_attempt_at > now() + 30  # the delivery backoff, in the database

    # a redelivered message before the row is due sends nothing
    assert addenda.write_and_send(rt, qid) == "sending"
    assert len(peer.sent) == 1

    # due: the reconciler publishes the question's addendum once, then not again
    with rt.db.session() as s:
        s.get(Delivery, row.id).next_attempt_at = now() - 1  # type: ignore[union-attr]
        s.commit()
    published: list[int] = []
    reconciler = Reconciler(rt.db, rt.settings, Publishers(
        prepare=lambda *_: None, infer=lambda *_: None, report=lambda *_: None,
        addendum=published.append))
    reconciler.run()
    reconciler.run()
    assert published == [qid]

    assert addenda.write_and_send(rt, qid) == "written"
    assert addenda.write_and_send(rt, qid) == "written"  # and a duplicate message: nothing
    assert len(peer.sent) == 2 and len(set(peer.sent)) == 1  # the same SR, delivered once
    (row,) = rows_of(rt, qid)
    assert (row.state, row.attempts) == ("done", 2)
    # the first SR's own delivery row is untouched by the addendum's
    with rt.db.session() as s:
        assert [d.state for d in claims.pending_deliveries(rt, job.id)] == []
        first = s.query(Delivery).filter(Delivery.job_id == job.id,
                                         Delivery.document == deliveries.FIRST_SR).one()
        assert (first.state, first.attempts) == ("done", 1)


def test_two_copies_of_one_message_at_once_send_the_addendum_once(
        rt: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    job = done_job(rt, tmp_path, monkeypatch)
    qid = answered_question(rt, job, "Where is the edema?")
    assert addenda.file_addendum(rt, qid) == "sending"
    gate = threading.Barrier(2)
    peer = Peer()
    monkeypatch.setattr(addenda, "send_to", peer)
    real_claim = deliveries.claim

    def claim_together(*args: Any) -> bool:
        gate.wait(timeout=60)  # both copies reach the claim before either sends
        return real_claim(*args)

    monkeypatch.setattr(deliveries, "claim", claim_together)
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(addenda.send_due(rt, qid)))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert len(peer.sent) == 1, peer.sent
    assert sorted(results)[-1] == "written" and state_of(rt, qid) == "written"


def test_a_permanent_rejection_fails_the_row_and_asking_again_sends_it_again(
        rt: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    job = done_job(rt, tmp_path, monkeypatch)
    qid = answered_question(rt, job, "Where is the edema?")
    peer = Peer("reject")
    monkeypatch.setattr(addenda, "send_to", peer)
    assert addenda.write_and_send(rt, qid) == "failed"
    (row,) = rows_of(rt, qid)
    assert row.state == "failed" and "reject" in row.detail
    with rt.db.session() as s:
        assert questions.want_addendum(s, qid) is not None
    assert addenda.write_and_send(rt, qid) == "written"
    (row,) = rows_of(rt, qid)
    assert (row.state, row.attempts) == ("done", 2) and len(peer.sent) == 2


def test_a_send_that_raises_releases_its_claim_and_is_scheduled(
        rt: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    job = done_job(rt, tmp_path, monkeypatch)
    qid = answered_question(rt, job, "Where is the edema?")

    def explode(*_a: Any) -> SendOutcome:
        raise MemoryError("out of memory")

    monkeypatch.setattr(addenda, "send_to", explode)
    assert addenda.write_and_send(rt, qid) == "sending"
    (row,) = rows_of(rt, qid)
    assert (row.holder, row.state, row.attempts) == ("", "retrying", 1)
    assert "MemoryError" in row.detail


def test_a_dead_holders_addendum_row_is_released_and_published_again(
        rt: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    job = done_job(rt, tmp_path, monkeypatch)
    qid = answered_question(rt, job, "Where is the edema?")
    assert addenda.file_addendum(rt, qid) == "sending"
    (row,) = rows_of(rt, qid)
    assert deliveries.claim(rt.db, row.id, "gpu-node-that-died")
    published: list[int] = []
    Reconciler(rt.db, rt.settings, Publishers(
        prepare=lambda *_: None, infer=lambda *_: None, report=lambda *_: None,
        addendum=published.append)).run()
    assert published == [qid]
    (row,) = rows_of(rt, qid)
    assert row.holder == "" and row.state == "pending"
    monkeypatch.setattr(addenda, "send_to", Peer())
    assert addenda.send_due(rt, qid) == "written"


def test_addenda_of_one_job_are_numbered_in_order_in_their_own_series(
        rt: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    job = done_job(rt, tmp_path, monkeypatch)
    monkeypatch.setattr(addenda, "send_to", Peer())
    first_sr = dcmread(job.sr_path, stop_before_pixels=True)
    filed = []
    for text in ("Where is the edema?", "Is there an effusion?"):
        qid = answered_question(rt, job, text)
        assert addenda.write_and_send(rt, qid) == "written"
        with rt.db.session() as s:
            q = s.get(Question, qid)
            assert q is not None
            filed.append(dcmread(q.addendum_path, stop_before_pixels=True))
    assert [int(a.InstanceNumber) for a in filed] == [1, 2]
    assert {int(a.SeriesNumber) for a in filed} == {series_number(Kind.ADDENDUM)}
    assert int(first_sr.SeriesNumber) == series_number(Kind.SR) != series_number(Kind.ADDENDUM)
    assert filed[0].SeriesInstanceUID == filed[1].SeriesInstanceUID != first_sr.SeriesInstanceUID


# -- on a real serve, with dcmtk's storescp as the two PACS ---------------------------------

def second_study(rg1: Path, out: Path) -> Path:
    """RG1 as another study: new Study, Series and SOP Instance UIDs."""
    from pydicom.uid import generate_uid

    ds = dcmread(rg1)
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.save_as(out, enforce_file_format=True)
    return out


@pytest.mark.integration
@pytest.mark.parametrize("backend", ["mock", "openai"])
def test_an_addendum_to_a_pacs_that_is_down_delays_no_other_study_and_lands_once(
        backend: str, request: pytest.FixtureRequest, serve_factory: Any, rg1: Path,
        tmp_path: Path) -> None:
    """Issues 30 and 31: a destination that is down holds no worker.  RG1's SR goes to PACS
    A and B; B stops; the addendum asked for then reaches A and waits for B with its next
    attempt scheduled; a new study sent meanwhile gets its SR at A while the addendum's
    delivery to B is still waiting (the old task slept three attempts and failed it); B
    comes back on its port and receives the addendum once."""
    from tests.peers import StoreSCP, backend_env
    from tests.test_followups import done_job, http, wait_until

    if backend == "openai":
        env = backend_env("openai", standin_url=request.getfixturevalue("vllm_standin").url)
    else:
        env = {**backend_env("mock"), "CXR_MOCK_LABELS": "Edema"}
    a, b = StoreSCP(tmp_path / "a", "PACSA"), StoreSCP(tmp_path / "b", "PACSB")
    try:
        srv = serve_factory.new({**env, "CXR_DESTINATIONS": f"{a.destination},{b.destination}",
                                 "CXR_RETRY_BACKOFF_SECONDS": "15",
                                 "CXR_RETRY_MAX_BACKOFF_SECONDS": "15",
                                 "CXR_DELIVERY_MAX_ATTEMPTS": "100"}).start()
        job = done_job(srv, rg1)
        first_uids = a.delivered_uids()
        assert len(first_uids) == 1 and b.delivered_uids() == first_uids
        b.stop()

        code, q = http(srv, "POST", f"/api/jobs/{job['job_id']}/questions",
                       {"question": "Where is the edema?", "to_pacs": True})
        assert code == 202, q
        qid = q["question_id"]
        document = f"addendum:{qid}"

        def addendum_row_to_b() -> dict[str, Any] | None:
            code, shown = http(srv, "GET", f"/api/jobs/{job['job_id']}")
            rows = [d for d in shown.get("deliveries", []) if d["document"] == document
                    and d["destination"] == b.destination] if code == 200 else []
            return rows[0] if rows and rows[0]["attempts"] >= 1 else None

        assert wait_until(addendum_row_to_b, "the addendum tried at B")["state"] == "retrying"
        a.wait_files(2)
        (addendum_uid,) = set(a.delivered_uids()) - set(first_uids)

        srv.storescu(second_study(rg1, tmp_path / "second.dcm"))
        a.wait_files(3)  # the new study's SR, at the PACS that is up
        row = addendum_row_to_b()
        assert row is not None and row["state"] == "retrying", row  # still waiting, not given up
        code, view = http(srv, "GET", f"/api/questions/{qid}")
        assert view["addendum"]["state"] == "sending", view

        b2 = StoreSCP(tmp_path / "b", "PACSB", port=b.port)  # B is back, same port and folder
        try:
            def written() -> dict[str, Any] | None:
                code, v = http(srv, "GET", f"/api/questions/{qid}")
                return v if code == 200 and v["addendum"]["state"] == "written" else None

            wait_until(written, "the addendum delivered to B", timeout=300)
            assert b2.delivered_uids().count(addendum_uid) == 1
            assert a.delivered_uids().count(addendum_uid) == 1
        finally:
            b2.stop()
    finally:
        a.stop()
        b.stop()
