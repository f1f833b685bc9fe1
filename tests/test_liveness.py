"""Liveness and scheduled retries, from the database alone (the reconciler's sweeps)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import update

from tests.test_tasks import queued_job
from worker.pipeline import inference
from worker.pipeline import stages as pipeline
from worker.pipeline.reconciler import MAX_TAKEOVERS, Publishers, Reconciler
from worker.runtime import Runtime, configure
from worker.settings import load_settings
from worker.store import jobs
from worker.store.db import Job, WorkerProcess, now
from worker.store.liveness import Liveness, live_names, mark_dead_local_processes


class Published:
    def __init__(self) -> None:
        self.sent: list[tuple[str, int]] = []

    def publishers(self) -> Publishers:
        return Publishers(prepare=lambda j, _v: self.sent.append(("prepare", j)),
                          infer=lambda j, _v: self.sent.append(("infer", j)),
                          report=lambda j, _v: self.sent.append(("report", j)))


@pytest.fixture
def rt(tmp_path: Path) -> Runtime:
    return configure(load_settings(None, {}, data_dir=tmp_path / "data",
                                   liveness_timeout_seconds=2.0, requeue_seconds=1.0,
                                   retry_backoff_seconds=1.0))


def reconciler(rt: Runtime, depth: int | None = 0) -> tuple[Reconciler, Published]:
    out = Published()
    return Reconciler(rt.db, rt.settings, out.publishers(), lambda _q: depth), out


def set_job(rt: Runtime, job_id: int, **values: object) -> None:
    with rt.db.session() as s:
        s.execute(update(Job).where(Job.id == job_id).values(**values))
        s.commit()


def get(rt: Runtime, job_id: int) -> Job:
    with rt.db.session() as s:
        job = s.get(Job, job_id)
        assert job is not None
        return job


def test_waiting_never_counts_an_attempt(rt: Runtime, tmp_path: Path) -> None:
    job = queued_job(rt, tmp_path)
    assert pipeline.prepare(rt, job.id, job.version)  # now waiting in 'prepared'
    set_job(rt, job.id, enqueued_at=now() - 3600)  # an hour in the queue: a long backlog
    busy, sent = reconciler(rt, depth=500)  # messages wait in the gpu queue
    for _ in range(20):
        busy.run()
    assert sent.sent == [] and get(rt, job.id).attempts == 0
    idle, sent = reconciler(rt, depth=0)  # the queue is empty: its message was lost
    idle.run()
    assert sent.sent == [("infer", job.id)]
    row = get(rt, job.id)
    assert (row.state, row.attempts) == (jobs.PREPARED, 0)
    unknown, sent = reconciler(rt, depth=None)  # the broker is down: wait, do not guess
    set_job(rt, job.id, enqueued_at=now() - 3600)
    unknown.run()
    assert sent.sent == []


def test_a_dead_holders_job_is_taken_over_once(rt: Runtime, tmp_path: Path) -> None:
    job = queued_job(rt, tmp_path)
    with rt.db.session() as s:
        assert jobs.claim(s, job.id, job.version, (jobs.QUEUED,), jobs.PREPARING, "w-dead")
        s.add(WorkerProcess(name="w-dead", kind="worker", host="elsewhere", pid=1, queues="",
                            started_at=now() - 60, last_beat=now() - 60))
        s.add(WorkerProcess(name="w-live", kind="worker", host="elsewhere", pid=1, queues="",
                            started_at=now(), last_beat=now()))
        s.commit()
    sweep, sent = reconciler(rt)
    result = sweep.run()
    assert result.taken_over == [job.id] and sent.sent == [("prepare", job.id)]
    row = get(rt, job.id)
    assert (row.state, row.holder, row.attempts) == (jobs.QUEUED, "", 1)
    sweep.run()  # nothing more to take over: no second attempt
    assert get(rt, job.id).attempts == 1
    # a job held by a live process is left alone
    with rt.db.session() as s:
        assert jobs.claim(s, job.id, job.version, (jobs.QUEUED,), jobs.PREPARING, "w-live")
    assert sweep.run().taken_over == []


def test_takeover_keeps_a_stored_result_and_fails_a_poison_job(rt: Runtime,
                                                              tmp_path: Path) -> None:
    job = queued_job(rt, tmp_path)
    assert pipeline.prepare(rt, job.id, job.version)
    assert pipeline.infer_batch(rt, job.id, job.version)
    with rt.db.session() as s:  # a reporter claimed it, then died
        assert jobs.claim(s, job.id, job.version, (jobs.INFERRING,), jobs.REPORTING, "gone")
    sweep, sent = reconciler(rt)
    sweep.run()
    assert sent.sent == [("report", job.id)] and get(rt, job.id).result is not None
    set_job(rt, job.id, attempts=MAX_TAKEOVERS)
    with rt.db.session() as s:
        assert jobs.claim(s, job.id, job.version, (jobs.REPORTING,), jobs.REPORTING, "gone")
    assert sweep.run().failed == [job.id]
    row = get(rt, job.id)
    assert row.state == jobs.FAILED and "taken over" in row.reason


def test_stage_backstop_takes_over_a_stuck_live_holder(rt: Runtime, tmp_path: Path) -> None:
    job = queued_job(rt, tmp_path)
    live = Liveness(rt.db, "stuck", "worker", interval=0.2)
    live.start()
    try:
        with rt.db.session() as s:
            assert jobs.claim(s, job.id, job.version, (jobs.QUEUED,), jobs.PREPARING, "stuck")
        sweep, _ = reconciler(rt)
        assert sweep.run().taken_over == []
        set_job(rt, job.id, held_since=now() - rt.settings.stage_timeout_seconds - 1)
        assert sweep.run().taken_over == [job.id]
    finally:
        live.stop()


def test_liveness_names_and_local_dead_processes(rt: Runtime) -> None:
    a = Liveness(rt.db, "a@h", "worker", interval=0.1)
    a.start()
    assert "a@h" in live_names(rt.db, 5)
    a.stop()  # a clean stop says so: no timeout to wait for
    assert "a@h" not in live_names(rt.db, 5)
    with rt.db.session() as s:  # a process of this host whose pid is gone
        import socket

        s.add(WorkerProcess(name="ghost", kind="worker", host=socket.gethostname(),
                            pid=2**22 + 12345, queues="", started_at=now(), last_beat=now()))
        s.commit()
    assert "ghost" in mark_dead_local_processes(rt.db)
    assert "ghost" not in live_names(rt.db, 5)


def test_transient_inference_failure_is_scheduled_not_counted(rt: Runtime, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    from models.backend import BackendError

    job = queued_job(rt, tmp_path)
    assert pipeline.prepare(rt, job.id, job.version)

    def down(*_a: object, **_k: object) -> None:
        raise BackendError("server unavailable")

    monkeypatch.setattr(inference, "run_studies", down)
    assert pipeline.infer_batch(rt, job.id, job.version) == []
    row = get(rt, job.id)
    assert (row.state, row.retries, row.attempts) == (jobs.PREPARED, 1, 0)
    assert row.next_attempt_at > now() and "unavailable" in row.last_error
    assert pipeline.infer_batch(rt, job.id, job.version) == []  # not due yet: not claimed
    assert get(rt, job.id).retries == 1
    sweep, sent = reconciler(rt, depth=1)
    sweep.run()
    assert sent.sent == []
    set_job(rt, job.id, next_attempt_at=now() - 0.1)
    sweep.run()
    assert sent.sent == [("infer", job.id)]
    monkeypatch.undo()
    assert pipeline.infer_batch(rt, job.id, job.version) == [(job.id, job.version)]
