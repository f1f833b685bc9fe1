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
from tests.peers import PostgresCluster, RedisServer, StoreSCP, Worker, fresh_database
from tests.test_end_to_end import assert_stored
from worker.db import Database, Instance, Job

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


def test_worker_killed_during_inference_gives_exactly_one_sr(
    serve_factory, storescp: StoreSCP, redis: RedisServer, pg_url: str, tmp_path: Path
) -> None:
    cluster = Cluster(serve_factory, tmp_path, redis.url, pg_url, storescp.destination,
                      {"CXR_MOCK_LATENCY_SECONDS": "3"}).start(workers=1)
    try:
        (path,) = studies(tmp_path / "in", 1)
        assert_stored(cluster.gateway.storescu(path, extra=("-v",)))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with cluster.db.session() as s:
                job = s.scalar(select(Job))
            if job is not None and job.state == "inferring":
                break
            time.sleep(0.1)
        assert job is not None and job.state == "inferring" and job.holder
        dead = job.holder
        cluster.workers[0].kill()  # SIGKILL mid-generation: the message stays unacked
        killed = time.monotonic()
        cluster.add_worker()
        while time.monotonic() - killed < 60:
            with cluster.db.session() as s:
                now_held = s.get(Job, job.id)
            if now_held is not None and now_held.holder not in ("", dead):
                break
            time.sleep(0.2)
        took = time.monotonic() - killed
        assert took < 4 + 1 + 5, f"taken over after {took:.1f} s"  # timeout + beat + margin
        (done,) = wait_all(cluster.db, 1, timeout=120)
        assert done.state == "done" and done.attempts == 1
        time.sleep(3)
        assert storescp.delivered_uids() == [done.sr_sop_instance_uid]
    finally:
        cluster.stop()


def test_redis_restart_loses_nothing(serve_factory, storescp: StoreSCP, redis: RedisServer,
                                     pg_url: str, tmp_path: Path) -> None:
    cluster = Cluster(serve_factory, tmp_path, redis.url, pg_url, storescp.destination,
                      {"CXR_MOCK_LATENCY_SECONDS": "0.3"}).start(workers=2)
    try:
        files = studies(tmp_path / "in", 20)
        out = cluster.gateway.storescu(*files[:10], extra=("-v",))
        assert out.stderr.count("Store Response (Success)") == 10
        time.sleep(2.5)  # some jobs queued or running
        redis.kill()  # queued messages are gone with it (no persistence)
        time.sleep(1)
        redis.start()
        out = cluster.gateway.storescu(*files[10:], extra=("-v",))
        assert out.stderr.count("Store Response (Success)") == 10
        jobs = wait_all(cluster.db, 20, timeout=240)
        assert [j.state for j in jobs] == ["done"] * 20
        assert len(storescp.wait_files(20)) == 20
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

    from worker.db import WorkerProcess

    cluster = Cluster(serve_factory, tmp_path, redis.url, pg_url, storescp.destination)
    cluster.gateway.start("--worker-queues", "cpu")
    plain = [Worker(cluster.gateway.env, tmp_path / "w.log", "", queues="gpu")
             for _ in range(2)]
    named = Worker(cluster.gateway.env, tmp_path / "w.log", "gpu1@%h", queues="gpu")
    cluster.workers += [*plain, named]
    try:
        deadline = time.monotonic() + 60
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
        deadline = time.monotonic() + 90
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
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        assert time.monotonic() - start < 3 + 2
    finally:
        hole.close()
        cluster.stop()
