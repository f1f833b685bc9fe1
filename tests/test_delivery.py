"""Delivery: retries on the database's schedule, a busy PACS (A-ASSOCIATE-RJ transient)
retried until it has room, a permanent reject failed at once, and SIGTERM that never hangs
on a peer."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from pydicom import dcmread
from pynetdicom import AE, AllStoragePresentationContexts
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from sqlalchemy import select

from dicom_gateway.transfer.destinations import Destination
from dicom_gateway.transfer.sender import association_reject, send_datasets
from tests.peers import BIN, BlackHole, StoreSCP, free_port
from tests.test_end_to_end import assert_stored, db_for, wait_job
from worker.store.db import AssociationLog, Delivery, Instance, Job, JobEvent

pytestmark = pytest.mark.integration
T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 120.0) -> T:
    """Poll ``probe`` until it returns something (a generous cap, never a measured time)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found is not None:
            return found
        time.sleep(0.2)
    raise TimeoutError(f"gave up waiting for {what} after {timeout} s")


@pytest.fixture(params=["mock", "openai"])
def backend_env(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """The gateway's model backend: mock, or the openai backend against the vLLM stand-in
    (a real HTTP peer), so delivery is shown not to depend on which backend made the SR."""
    if request.param == "mock":
        yield {}
        return
    standin: Any = request.getfixturevalue("vllm_standin")
    yield {"CXR_MODEL_BACKEND": "openai", "CXR_OPENAI_URL": standin.url}
    assert standin.chat_requests(), "the gateway never asked the stand-in: not the openai path"


def jobs_show(data_dir: Path, job_id: int) -> dict[str, object]:
    out = subprocess.run([str(BIN / "cxr-gateway"), "jobs", "show", str(job_id), "--json",
                          "--data-dir", str(data_dir)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    shown: dict[str, object] = json.loads(out.stdout)
    return shown


def test_a_pacs_down_for_ten_seconds_gets_the_sr_on_the_backoff(
        serve_factory, rg1: Path, tmp_path: Path) -> None:
    port = free_port()  # nothing listens here yet: the PACS is down
    env = {"CXR_DESTINATIONS": f"DESTPACS@127.0.0.1:{port}", "CXR_RETRY_BACKOFF_SECONDS": "2",
           "CXR_RETRY_MAX_BACKOFF_SECONDS": "8"}
    srv = serve_factory.new(env).start()
    assert_stored(srv.storescu(rg1, extra=("-v",)))
    deadline = time.monotonic() + 60
    first_failure = None
    while time.monotonic() < deadline and first_failure is None:
        with db_for(srv.data_dir).session() as s:
            d = s.scalar(select(Delivery))
            if d is not None and d.attempts >= 1:
                first_failure = time.monotonic()
                job_id = d.job_id
        time.sleep(0.2)
    assert first_failure is not None
    shown = jobs_show(srv.data_dir, job_id)
    deliveries: list[dict[str, Any]] = shown["deliveries"]  # type: ignore[assignment]
    (delivery,) = deliveries
    assert delivery["state"] == "retrying" and delivery["next_attempt_at"]
    assert "association" in delivery["detail"] and shown["state"] == "delivering"
    time.sleep(max(0.0, 10 - (time.monotonic() - first_failure)))
    pacs = StoreSCP(tmp_path, port=port)  # back up after ten seconds
    up = time.time()
    try:
        pacs.wait_files(1, timeout=120)
        job = wait_job(srv.data_dir, shown["study_instance_uid"], ("done",))  # type: ignore
        assert pacs.delivered_uids() == [job.sr_sop_instance_uid]
        with db_for(srv.data_dir).session() as s:
            d = s.scalar(select(Delivery))
            assert d is not None and d.state == "done" and d.attempts >= 3
            # the landing attempt was a scheduled retry made after the PACS came back
            assert d.updated_at >= up
            retries = s.scalars(select(JobEvent).where(
                JobEvent.job_id == d.job_id, JobEvent.detail == "delivery attempt")).all()
            assert len(retries) == d.attempts - 1
    finally:
        pacs.stop()


def test_sigterm_while_sending_to_a_hung_pacs_exits_promptly(
        serve_factory, rg1: Path, tmp_path: Path) -> None:
    hole = BlackHole()
    srv = serve_factory.new({"CXR_DESTINATIONS": f"DESTPACS@127.0.0.1:{hole.port}"}).start()
    assert_stored(srv.storescu(rg1, extra=("-v",)))
    deadline = time.monotonic() + 60
    held = None
    while time.monotonic() < deadline:
        with db_for(srv.data_dir).session() as s:
            held = s.scalar(select(Job).where(Job.state == "delivering", Job.holder != ""))
        if held is not None and hole.connections:
            break
        time.sleep(0.1)
    assert held is not None and hole.connections, "the SR was never in flight"
    assert srv.proc is not None
    srv.proc.send_signal(signal.SIGTERM)
    # it exits by itself (no SIGKILL needed), cleanly, because the grace bounded the stop
    # rather than the hung peer: serve says it gave up waiting
    assert srv.proc.wait(timeout=60) == 0
    assert "serve did not stop within" in srv.log.read_text(errors="replace")
    # the in-flight delivery is taken over by the next start, to a PACS that now answers
    hole.close()
    pacs = StoreSCP(tmp_path, port=hole.port)
    try:
        srv.start()
        pacs.wait_files(1, timeout=60)
        job = wait_job(srv.data_dir, held.study_instance_uid, ("done",))
        assert pacs.delivered_uids() == [job.sr_sop_instance_uid]
        assert job.attempts == 1  # one takeover: its holder went away mid-delivery
    finally:
        pacs.stop()


def _hold_association(port: int, called: str) -> Any:
    """One association held open to a peer, as another modality's long transfer would.

    Asked for again while the peer rejects it transiently: just started, the peer may still
    count the connection that probed its port against its limit of one.
    """
    ae = AE(ae_title="HOLDER")
    ae.add_requested_context(Verification)

    def established() -> Any:
        assoc = ae.associate("127.0.0.1", port, ae_title=called)
        if assoc.is_established:
            return assoc
        reject = association_reject(assoc)
        assert reject is not None and not reject.permanent, f"not a busy peer: {reject}"
        return None

    return wait_for("the destination to accept the holding association", established, 60)


def test_a_busy_pacs_rejects_transiently_and_gets_the_sr_once_it_has_room(
        serve_factory, rg1: Path, tmp_path: Path, backend_env: dict[str, str]) -> None:
    # the destination: our own gateway allowing one association (what a PACS at its
    # limit answers: A-ASSOCIATE-RJ rejected-transient, local limit exceeded)
    pacs = serve_factory.new({"CXR_AE_TITLE": "BUSYPACS", "CXR_MAX_ASSOCIATIONS": "1",
                              "CXR_NETWORK_TIMEOUT": "600"},
                             data_dir=tmp_path / "pacs" / "data").start()
    holder = _hold_association(pacs.port, "BUSYPACS")
    try:
        srv = serve_factory.new({"CXR_DESTINATIONS": f"BUSYPACS@127.0.0.1:{pacs.port}",
                                 "CXR_RETRY_BACKOFF_SECONDS": "0.5",
                                 "CXR_RETRY_MAX_BACKOFF_SECONDS": "1",
                                 "CXR_DELIVERY_MAX_ATTEMPTS": "1000", **backend_env},
                                data_dir=tmp_path / "gateway" / "data").start()
        assert_stored(srv.storescu(rg1, extra=("-v",)))

        def rejected_twice() -> Delivery | None:
            with db_for(srv.data_dir).session() as s:
                d = s.scalar(select(Delivery))
                return d if d is not None and d.attempts >= 2 else None

        d = wait_for("two rejected delivery attempts", rejected_twice)
        assert d.state == "retrying" and d.next_attempt_at > 0, (d.state, d.detail)
        assert d.detail == ("association rejected-transient by service-provider "
                            "(presentation): local limit exceeded")
        with db_for(srv.data_dir).session() as s:
            job = s.get(Job, d.job_id)
            assert job is not None and job.state == "delivering"
            assert "local limit exceeded" in job.last_error and job.next_attempt_at > 0
        with db_for(pacs.data_dir).session() as s:  # nothing landed while it was busy
            assert s.scalars(select(Instance).where(Instance.modality == "SR")).all() == []
        still_held = holder.send_c_echo()  # the holder is alive: the rejects were real
        assert still_held and still_held.Status == 0x0000
    finally:
        holder.release()
    released_at = time.time()

    study_uid = dcmread(rg1, stop_before_pixels=True).StudyInstanceUID
    job = wait_job(srv.data_dir, study_uid, ("done", "failed"), timeout=120)
    assert job.state == "done", job.reason

    def landed() -> Instance | None:
        with db_for(pacs.data_dir).session() as s:
            return s.scalar(select(Instance).where(
                Instance.sop_instance_uid == job.sr_sop_instance_uid))

    assert wait_for("the SR at the destination", landed).modality == "SR"
    with db_for(srv.data_dir).session() as s:
        (d,) = s.scalars(select(Delivery)).all()
        assert (d.state, d.detail) == ("done", "stored") and d.attempts >= 3
        events = [(e.state, e.detail, e.at) for e in s.scalars(
            select(JobEvent).where(JobEvent.job_id == job.id).order_by(JobEvent.id))]
    states = [e[0] for e in events]
    assert states.index("delivering") < states.index("done") == len(states) - 1
    retries = [e for e in events if e[:2] == ("delivering", "delivery attempt")]
    assert len(retries) == d.attempts - 1  # each retry a claim of the scheduled job
    assert events[-1][2] >= released_at  # done only once the peer had room

    def rejects_seen() -> list[AssociationLog] | None:
        with db_for(pacs.data_dir).session() as s:
            rows = list(s.scalars(select(AssociationLog).where(
                AssociationLog.calling_ae == "CXRGATEWAY")))
        return rows if len(rows) >= d.attempts else None

    # the peer's own record: every attempt but the last rejected, the last stored the SR
    outcomes = sorted(r.outcome for r in wait_for("the destination's association log",
                                                  rejects_seen))
    assert outcomes.count("rejected") == d.attempts - 1
    assert [(r.outcome, r.stored) for r in rejects_seen() or [] if r.outcome != "rejected"] \
        == [("released", 1)]


class CalledAETPeer:
    """A pynetdicom storage SCP that answers only to its own called AE title: anything
    else is A-ASSOCIATE-RJ rejected-permanent, called AE title not recognised."""

    def __init__(self, ae_title: str = "REALPACS") -> None:
        self.ae = AE(ae_title=ae_title)
        self.ae.require_called_aet = True
        self.ae.supported_contexts = AllStoragePresentationContexts
        self.ae.add_supported_context(Verification)
        self.rejects = 0
        self.lock = threading.Lock()
        self.port = free_port()

        def rejected(_event: Any) -> None:
            with self.lock:
                self.rejects += 1

        from pynetdicom import evt

        server = self.ae.start_server(("127.0.0.1", self.port), block=False,
                                      evt_handlers=[(evt.EVT_REJECTED, rejected)])
        assert server is not None
        self.server = server

    def stop(self) -> None:
        self.server.shutdown()


def test_a_permanent_reject_fails_the_delivery_at_once_with_the_reason(
        serve_factory, rg1: Path, backend_env: dict[str, str]) -> None:
    peer = CalledAETPeer("REALPACS")
    try:
        srv = serve_factory.new({"CXR_DESTINATIONS": f"WRONGAET@127.0.0.1:{peer.port}",
                                 "CXR_RETRY_BACKOFF_SECONDS": "0.5",
                                 "CXR_RETRY_MAX_BACKOFF_SECONDS": "1", **backend_env}).start()
        assert_stored(srv.storescu(rg1, extra=("-v",)))
        study_uid = dcmread(rg1, stop_before_pixels=True).StudyInstanceUID
        job = wait_job(srv.data_dir, study_uid, ("done", "failed"), timeout=120)
        reason = ("association rejected-permanent by service-user: "
                  "called AE title not recognised")
        assert job.state == "failed"
        assert job.reason == f"delivery failed: WRONGAET@127.0.0.1:{peer.port}: {reason}"
        with db_for(srv.data_dir).session() as s:
            (d,) = s.scalars(select(Delivery)).all()
            assert (d.state, d.attempts, d.detail) == ("failed", 1, reason)
            assert d.next_attempt_at == 0.0  # nothing scheduled: no retry will come
            events = [(e.state, e.detail) for e in s.scalars(
                select(JobEvent).where(JobEvent.job_id == job.id).order_by(JobEvent.id))]
        assert events[-1] == ("failed", job.reason)
        assert ("delivering", "delivery attempt") not in events  # never claimed again
        assert peer.rejects == 1
    finally:
        peer.stop()


def test_send_reads_the_reject_pdu_result_source_and_reason(rg1: Path) -> None:
    """sender against a bare pynetdicom SCP: what pynetdicom keeps of the A-ASSOCIATE-RJ
    (``assoc.acceptor.primitive``) is read, so an upgrade that moves it shows here."""
    peer = CalledAETPeer("REALPACS")
    peer.ae.maximum_associations = 1
    sr = dcmread(rg1)
    try:
        wrong = send_datasets([sr], Destination("OTHER", "127.0.0.1", peer.port), "SCU", 30)
        holder = _hold_association(peer.port, "REALPACS")
        try:
            busy = send_datasets([sr], Destination("REALPACS", "127.0.0.1", peer.port),
                                 "SCU", 30)
        finally:
            holder.release()
    finally:
        peer.stop()
    assert (wrong.ok, wrong.permanent, wrong.detail) == (
        False, True, "association rejected-permanent by service-user: "
                     "called AE title not recognised")
    assert (busy.ok, busy.permanent, busy.detail) == (
        False, False, "association rejected-transient by service-provider (presentation): "
                      "local limit exceeded")
