"""Redis + PostgreSQL: a gateway node and separate GPU worker processes, and what may go wrong."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.uid import generate_uid
from sqlalchemy import select

from tests.dicom_factory import make_cr, save
from tests.peers import (
    PostgresCluster,
    RedisServer,
    SlowModel,
    StoreSCP,
    Worker,
    fresh_database,
)
from tests.test_end_to_end import assert_stored
from worker.store.db import Database, Instance, Job, JobEvent

pytestmark = pytest.mark.integration


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path).start()
    yield server
    server.stop()


@pytest.fixture
def pg_url() -> Iterator[str]:
    url, drop = fresh_database()
    yield url
    drop()


def wait_all(db: Database, count: int, timeout: float = 180.0) -> list[Job]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with db.session() as s:
            rows = list(s.scalars(select(Job)).all())
        if len(rows) >= count and all(j.state in ("done", "failed") for j in rows):
            return rows
        time.sleep(0.5)
    states = {j.id: j.state for j in rows}
    raise TimeoutError(f"jobs not finished: {states}")


def job_events(db: Database, job_id: int) -> list[tuple[str, str, float]]:
    """(state, detail, at) of a job's events, in the order they were written."""
    with db.session() as s:
        return [(e.state, e.detail, e.at) for e in s.scalars(
            select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id)).all()]


def unfinished(db: Database) -> set[int]:
    with db.session() as s:
        return set(s.scalars(select(Job.id).where(Job.state.not_in(("done", "failed")))).all())


def studies(folder: Path, n: int) -> list[Path]:
    folder.mkdir(exist_ok=True)
    return [save(make_cr(generate_uid(), seed=i), folder / f"s{i:03d}.dcm") for i in range(n)]


class Cluster:
    """A gateway-only `serve --no-worker` plus worker processes on Redis and PostgreSQL."""

    def __init__(self, factory, tmp: Path, redis_url: str, db_url: str, dest: str,
                 extra: dict[str, str] | None = None) -> None:
        env = {"CXR_BROKER_URL": redis_url, "CXR_DATABASE_URL": db_url,
               "CXR_DESTINATIONS": dest, "CXR_LIVENESS_TIMEOUT_SECONDS": "4",
               "CXR_HEARTBEAT_SECONDS": "1", "CXR_REQUEUE_SECONDS": "5",
               "CXR_GPU_BATCH_WAIT_SECONDS": "0.2", **(extra or {})}
        self.tmp = tmp
        self.gateway = factory.new(env)
        self.db = Database(db_url)
        self.workers: list[Worker] = []

    def start(self, workers: int = 2) -> Cluster:
        # the gateway node prepares and reports (spool and outbox are local to it); the
        # worker processes take only the gpu queue and never touch its disk
        self.gateway.start("--worker-queues", "cpu")
        for _ in range(workers):
            self.add_worker()
        return self

    def add_worker(self) -> Worker:
        w = Worker(self.gateway.env, self.tmp / "workers.log", f"w{len(self.workers)}",
                   queues="gpu")
        self.workers.append(w)
        return w

    def stop(self) -> None:
        for w in self.workers:
            w.stop()


def test_fifty_studies_through_two_workers(serve_factory, storescp: StoreSCP, redis: RedisServer,
                                           pg_url: str, tmp_path: Path) -> None:
    cluster = Cluster(serve_factory, tmp_path, redis.url, pg_url, storescp.destination,
                      {"CXR_MOCK_LATENCY_SECONDS": "0.1"}).start(workers=2)
    try:
        files = studies(tmp_path / "in", 50)
        out = cluster.gateway.storescu(*files, extra=("-v",))
        assert out.stderr.count("Store Response (Success)") == 50, out.stderr[-2000:]
        jobs = wait_all(cluster.db, 50)
        assert [j.state for j in jobs] == ["done"] * 50
        assert len({j.worker for j in jobs}) == 2  # both GPU workers took batches
        srs = storescp.wait_files(50)
        assert len(srs) == 50
        assert storescp.delivered_uids() == sorted(j.sr_sop_instance_uid for j in jobs)
    finally:
        cluster.stop()


@pytest.mark.parametrize("model_backend", ["mock", "openai"])
def test_worker_killed_during_inference_gives_exactly_one_sr(
    serve_factory, storescp: StoreSCP, redis: RedisServer, pg_url: str, tmp_path: Path,
    model_backend: str, request: pytest.FixtureRequest,
) -> None:
    model = SlowModel(model_backend, 3.0, request)  # openai: the stand-in holds requests 3 s
    cluster = Cluster(serve_factory, tmp_path, redis.url, pg_url, storescp.destination,
                      model.env).start(workers=1)
    try:
        (path,) = studies(tmp_path / "in", 1)
        assert_stored(cluster.gateway.storescu(path, extra=("-v",)))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with cluster.db.session() as s:
                job = s.scalar(select(Job))
            if job is not None and job.state == "inferring":
                break
            time.sleep(0.1)
        assert job is not None and job.state == "inferring" and job.holder
        dead = job.holder
        cut = model.wait_in_flight()  # openai: the findings request is being generated
        killed_at = time.time()  # the clock the job events are stamped with
        cluster.workers[0].kill()  # SIGKILL mid-generation: the job is held by a dead worker
        cluster.add_worker()
        (done,) = wait_all(cluster.db, 1, timeout=240)
        assert done.state == "done" and done.attempts == 1  # one takeover, counted once
        events = job_events(cluster.db, done.id)
        takeovers = [i for i, (_, detail, at) in enumerate(events)
                     if detail.startswith(f"taken over: holder {dead} stopped answering")]
        assert len(takeovers) == 1, events
        after = events[takeovers[0]:]
        assert after[0][2] >= killed_at, events  # taken over after the kill, not before
        assert [state for state, _, _ in after].count("inferring") == 1, events  # once more
        assert [state for state, _, _ in events].count("done") == 1, events
        assert storescp.delivered_uids() == [done.sr_sop_instance_uid]  # one SR, one file
        if model.standin is not None:  # the cut-off request, then one whole conversation
            image = cut[0].image_sha256
            assert [r.turn for r in cut] == ["findings"]
            assert model.turns() == [(image, "findings", 200), (image, "findings", 200),
                                     (image, "report", 200)]
    finally:
        cluster.stop()


def test_redis_restart_loses_nothing(serve_factory, storescp: StoreSCP, redis: RedisServer,
                                     pg_url: str, tmp_path: Path) -> None:
    """Redis is killed while it verifiably holds messages for unfinished jobs (queued, or
    taken and not yet acknowledged); every job still finishes, and each SR arrives once."""
    import redis as redis_client

    cluster = Cluster(serve_factory, tmp_path, redis.url, pg_url, storescp.destination,
                      {"CXR_MOCK_LATENCY_SECONDS": "1"}).start(workers=2)
    try:
        files = studies(tmp_path / "in", 20)
        out = cluster.gateway.storescu(*files[:10], extra=("-v",))
        assert out.stderr.count("Store Response (Success)") == 10
        broker = redis_client.Redis(port=redis.port)

        def messages() -> int:
            """Messages in celery's queues (kombu keeps one list per priority: "gpu",
            "gpu\\x06\\x163", ...) and those workers took and have not acknowledged."""
            queued = sum(int(broker.llen(k)) for k in broker.scan_iter()
                         if k.split(b"\x06\x16")[0] in (b"cpu", b"gpu")
                         and broker.type(k) == b"list")
            return queued + int(broker.hlen("unacked"))

        deadline = time.monotonic() + 120
        while not (messages() and unfinished(cluster.db)):
            assert time.monotonic() < deadline, "no message was ever waiting in Redis"
            time.sleep(0.05)
        redis.kill()  # queued messages are gone with it (no persistence)
        broker.close()
        pending = unfinished(cluster.db)
        assert pending, "the kill must land while jobs are unfinished"
        redis.start()
        out = cluster.gateway.storescu(*files[10:], extra=("-v",))
        assert out.stderr.count("Store Response (Success)") == 10
        jobs = wait_all(cluster.db, 20, timeout=300)
        not_done = {j.id: (j.state, j.reason, j.last_error, job_events(cluster.db, j.id))
                    for j in jobs if j.state != "done"}
        assert not_done == {}  # those pending at the kill too
        assert len(jobs) == 20
        assert pending <= {j.id for j in jobs}
        assert storescp.delivered_uids() == sorted(j.sr_sop_instance_uid for j in jobs)
        for j in jobs:  # exactly once: one done, one delivered SR per job
            assert [e[0] for e in job_events(cluster.db, j.id)].count("done") == 1
    finally:
        cluster.stop()


def test_postgres_down_means_a700_and_nothing_stored(serve_factory, tmp_path: Path) -> None:
    pg = PostgresCluster(tmp_path / "pg").start()
    try:
        srv = serve_factory.new({"CXR_DATABASE_URL": pg.url}).start()
        first, second = studies(tmp_path / "in", 2)
        assert_stored(srv.storescu(first, extra=("-v",)))
        pg.stop()
        out = srv.storescu(second, extra=("-v",))
        assert "Refused: OutOfResources" in out.stderr or "0xa700" in out.stderr.lower(), \
            out.stderr
        spooled = {p.stem for p in (srv.data_dir / "spool").rglob("*.dcm")}
        assert len(spooled) == 1  # the refused instance left no file behind
        pg.start()
        assert_stored(srv.storescu(second, extra=("-v",)))  # and it recovers
        with Database(pg.url).session() as s:
            assert len(s.scalars(select(Instance)).all()) == 2
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            pg.stop()
        pg.remove()


def test_worker_names_are_unique_per_process(serve_factory, storescp: StoreSCP,
                                             redis: RedisServer, pg_url: str,
                                             tmp_path: Path) -> None:
    import socket

    from worker.store.db import WorkerProcess

    cluster = Cluster(serve_factory, tmp_path, redis.url, pg_url, storescp.destination)
    cluster.gateway.start("--worker-queues", "cpu")
    plain = [Worker(cluster.gateway.env, tmp_path / "w.log", "", queues="gpu")
             for _ in range(2)]
    named = Worker(cluster.gateway.env, tmp_path / "w.log", "gpu1@%h", queues="gpu")
    cluster.workers += [*plain, named]
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with cluster.db.session() as s:
                names = {w.name for w in s.scalars(select(WorkerProcess)).all()
                         if w.kind == "worker" and w.stopped_at is None}
            if len(names) >= 3:
                break
            time.sleep(0.3)
        host = socket.gethostname()
        assert f"gpu1@{host}" in names  # %h expanded
        assert {f"worker-{w.proc.pid}@{host}" for w in plain} <= names  # one per process
    finally:
        cluster.stop()


def test_sigterm_while_sending_reports_on_redis_exits_promptly(
        serve_factory, redis: RedisServer, pg_url: str, rg1: Path, tmp_path: Path) -> None:
    import signal

    from tests.peers import BlackHole

    hole = BlackHole()
    cluster = Cluster(serve_factory, tmp_path, redis.url, pg_url,
                      f"DESTPACS@127.0.0.1:{hole.port}").start(workers=1)
    try:
        files = studies(tmp_path / "in", 3)
        assert_stored(cluster.gateway.storescu(*files, extra=("-v",)))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with cluster.db.session() as s:
                sending = s.scalar(select(Job).where(Job.state == "delivering",
                                                     Job.holder != ""))
            if sending is not None and hole.connections:
                break
            time.sleep(0.1)
        assert sending is not None and hole.connections, "no report was being sent"
        proc = cluster.gateway.proc
        assert proc is not None
        before = cluster.gateway.log.read_text()
        proc.send_signal(signal.SIGTERM)
        # it leaves by itself (120 s would be a hang), and it is the grace period that
        # ends the wait on the silent peer, not the peer: asserted by events, not by time
        assert proc.wait(timeout=120) == 0
        after = cluster.gateway.log.read_text()[len(before):]
        assert after.count("serve did not stop within 3.0 s; exiting anyway") == 1, after
    finally:
        hole.close()
        cluster.stop()
