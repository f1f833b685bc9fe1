"""The GPU worker keeps a server backend busy: the engine feeder keeps as many studies in
flight as the engine takes (at most CXR_OPENAI_MAX_IN_FLIGHT) against the vLLM stand-in (a
real HTTP peer with C sequence slots and vLLM's gauges), each study's two turns on their
own at its priority, the next prepared job claimed as one finishes.

Nothing here times anything: the stand-in's ``hold()`` keeps admitted sequences from
finishing, so a test sees the engine as full as the worker makes it, then lets it go.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from sqlalchemy import select, update

from models.backend import BackendInfo, Generation, ModelRequest
from models.engine_window import START
from models.openai_compat import ClientShards, ImageSource
from models.study import serves_concurrently
from tests.prepared import make_prepared
from tests.vllm_standin import StandinConfig, VLLMStandin
from worker.pipeline import inflight, tasks
from worker.pipeline import stages as pipeline
from worker.runtime import Runtime, configure
from worker.settings import load_settings
from worker.store import jobs
from worker.store.db import Job, now

pytestmark = pytest.mark.integration  # the vLLM stand-in: an HTTP server on loopback
CAP_SECONDS = 120.0


@pytest.fixture
def standin() -> Iterator[VLLMStandin]:
    server = VLLMStandin(StandinConfig(capacity=64)).start()
    yield server
    server.stop()


def runtime_for(tmp_path: Path, url: str, in_flight: int, **more: object) -> Runtime:
    return configure(load_settings(
        None, {}, data_dir=tmp_path / "data", model_backend="openai", openai_url=url,
        openai_max_in_flight=in_flight, poll_seconds=0.05, **more))


def wait_for(cond: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + CAP_SECONDS
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {CAP_SECONDS:.0f} s: {what}")
        time.sleep(0.02)


def start_loop(rt: Runtime) -> tuple[inflight.Feeder, list[tuple[int, int]]]:
    """A feeder for this runtime (as the Celery task starts it), noting each job it
    reports done, in order."""
    told: list[tuple[int, int]] = []
    return inflight.Feeder(rt, told.extend).start(), told


def settle(feeder: inflight.Feeder, rt: Runtime) -> None:
    """Wait until the feeder holds nothing and no prepared job is due, then stop it."""
    def settled() -> bool:
        with rt.db.session() as s:
            due = s.scalar(select(Job.id).where(Job.state == jobs.PREPARED,
                                                Job.next_attempt_at <= now()).limit(1))
        return due is None and not feeder.flights
    wait_for(settled, "nothing in flight and nothing due")
    feeder.stop(CAP_SECONDS)
    assert not feeder.alive


def rows(rt: Runtime) -> list[Job]:
    with rt.db.session() as s:
        return list(s.scalars(select(Job).order_by(Job.id)).all())


@pytest.mark.parametrize(("in_flight", "waiting"), [(6, 10), (8, 3)])
def test_the_engine_holds_min_of_n_and_waiting_never_more(
        tmp_path: Path, standin: VLLMStandin, in_flight: int, waiting: int) -> None:
    rt = runtime_for(tmp_path, standin.url, in_flight, gpu_batch_size=2)
    images = make_prepared(rt.db, waiting)
    standin.hold()
    feeder, told = start_loop(rt)
    expected = min(in_flight, waiting)
    wait_for(lambda: standin.engine.running == expected, f"{expected} sequences generating")
    # as full as the worker makes it: nothing queued at the server beyond what it holds
    assert standin.engine.waiting == 0
    assert sum(r.state == jobs.INFERRING for r in rows(rt)) == expected
    standin.release_held()
    settle(feeder, rt)
    assert standin.peak_concurrency == expected  # reached, and never above N
    assert sorted(told) == sorted((j, 1) for j in images)
    for row in rows(rt):  # every waiting study done, each with both of its turns
        assert row.state == jobs.INFERRING and row.holder == "" and row.result
        result = json.loads(row.result)
        assert result["status"] == "ok" and result["report_text"]
        assert result["batch_size"] <= in_flight
    turns = Counter((r.image_sha256, r.turn) for r in standin.chat_requests())
    assert turns == Counter({(sha, turn): 1 for sha in images.values()
                             for turn in ("findings", "report")})


def test_the_celery_task_uses_the_in_flight_count_not_the_batch_size(
        tmp_path: Path, standin: VLLMStandin, monkeypatch: pytest.MonkeyPatch) -> None:
    rt = runtime_for(tmp_path, standin.url, 12, gpu_batch_size=4)
    images = make_prepared(rt.db, 20)
    assert serves_concurrently(rt.backend)
    reported: list[tuple[str, tuple[int, int]]] = []
    monkeypatch.setattr(tasks, "_publish_all", lambda task, pairs: reported.extend(
        (task.name, pair) for pair in pairs))  # the broker is not what this test is about
    standin.hold()
    tasks.infer.run(next(iter(images)), 1)  # wakes the feeder and returns
    wait_for(lambda: standin.engine.running == 12, "12 sequences generating")
    standin.release_held()
    wait_for(lambda: len(reported) == len(images), "every report published")
    inflight.drain(rt, CAP_SECONDS)
    assert standin.peak_concurrency == 12
    assert sorted(reported) == sorted(("cxr.report", (j, 1)) for j in images)


def test_live_jobs_are_claimed_before_batch_jobs(tmp_path: Path,
                                                 standin: VLLMStandin) -> None:
    rt = runtime_for(tmp_path, standin.url, 3)
    batch = make_prepared(rt.db, 4, priority=9)
    live = make_prepared(rt.db, 4, priority=0, first_seed=100)
    standin.hold()
    feeder, _ = start_loop(rt)
    wait_for(lambda: standin.engine.running == 3, "3 sequences generating")
    first_wave = {r.image_sha256 for r in standin.chat_requests("findings")}
    standin.release_held()
    settle(feeder, rt)
    assert len(first_wave) == 3 and first_wave <= set(live.values())
    assert all(r.result for r in rows(rt))  # the batch jobs too, once live ones were in
    assert {r.image_sha256 for r in standin.chat_requests("findings")} == \
        set(live.values()) | set(batch.values())


@pytest.mark.parametrize("status", [503, 429])
def test_a_busy_server_is_retried_later_not_counted(tmp_path: Path, standin: VLLMStandin,
                                                    status: int) -> None:
    rt = runtime_for(tmp_path, standin.url, 4)
    make_prepared(rt.db, 6)
    standin.reset(fail_first=2, fail_status=status)
    feeder, told = start_loop(rt)
    settle(feeder, rt)
    waiting = [r for r in rows(rt) if r.state == jobs.PREPARED]
    assert len(told) == 4 and len(waiting) == 2
    for row in waiting:
        assert (row.retries, row.attempts, row.holder) == (1, 0, "")
        assert row.next_attempt_at > now() and f"HTTP {status}" in row.last_error
    with rt.db.session() as s:  # their retry falls due
        s.execute(update(Job).where(Job.state == jobs.PREPARED)
                  .values(next_attempt_at=now() - 0.1))
        s.commit()
    feeder, told = start_loop(rt)
    settle(feeder, rt)
    assert sorted(told) == sorted((r.id, 1) for r in waiting)
    assert all(r.result and r.state == jobs.INFERRING for r in rows(rt))
    assert len(standin.chat_requests()) == 2 + 2 * 6  # two refused, then two turns each


def test_a_client_error_fails_the_job_and_spares_the_others(tmp_path: Path,
                                                            standin: VLLMStandin) -> None:
    rt = runtime_for(tmp_path, standin.url, 4)
    make_prepared(rt.db, 5)
    standin.reset(fail_first=1, fail_status=400)
    feeder, told = start_loop(rt)
    settle(feeder, rt)
    states = Counter(r.state for r in rows(rt))
    assert states == Counter({jobs.INFERRING: 4, jobs.FAILED: 1}) and len(told) == 4
    (failed,) = [r for r in rows(rt) if r.state == jobs.FAILED]
    assert failed.reason.startswith("inference: ") and "HTTP 400" in failed.reason
    assert failed.retries == 0 and failed.result is None


def test_on_shutdown_nothing_new_is_claimed_and_in_flight_finishes(
        tmp_path: Path, standin: VLLMStandin) -> None:
    rt = runtime_for(tmp_path, standin.url, 2)
    make_prepared(rt.db, 5)
    standin.hold()
    feeder, told = start_loop(rt)
    wait_for(lambda: standin.engine.running == 2, "2 sequences generating")
    rt.stopping.set()
    standin.release_held()
    wait_for(lambda: not feeder.alive, "the feeder ended once nothing was in flight")
    assert len(told) == 2
    states = Counter((r.state, r.holder) for r in rows(rt))
    assert states == Counter({(jobs.INFERRING, ""): 2, (jobs.PREPARED, ""): 3})


def test_results_are_stored_as_the_batch_path_stores_them(tmp_path: Path,
                                                           standin: VLLMStandin) -> None:
    rt = runtime_for(tmp_path, standin.url, 4, gpu_batch_size=4)
    first = make_prepared(rt.db, 3, first_seed=7)
    assert pipeline.infer_batch(rt, next(iter(first)), 1)  # the batch path
    again = make_prepared(rt.db, 3, first_seed=7)  # the same images
    feeder, _ = start_loop(rt)
    settle(feeder, rt)
    by_image: dict[str, list[dict[str, object]]] = {}
    for row in rows(rt):
        sha = (first | again)[row.id]
        assert row.result is not None
        by_image.setdefault(sha, []).append(json.loads(row.result))
    volatile = ("batch_id", "batch_size")
    for batch_result, continuous in by_image.values():
        assert {k: v for k, v in batch_result.items() if k not in volatile} == \
            {k: v for k, v in continuous.items() if k not in volatile}


class GatedBackend:
    """A server-like fake: turn 1 of the image named ``slow`` waits for ``gate``; no
    gauges (its metrics address refuses), so the window steers by latency."""

    concurrent_requests = True
    model = "fake"
    metrics_url = "http://127.0.0.1:9/metrics"
    info = BackendInfo(name="fake", model_id="fake", model_revision="0", is_mock=False)

    def __init__(self, slow: bytes) -> None:
        self.slow = slow
        self.gate = threading.Event()
        self.log: list[tuple[bytes, int]] = []

    def identify(self) -> BackendInfo:
        return self.info

    def async_client(self, connections: int) -> ClientShards:
        return ClientShards(1, {})

    def generate(self, requests: Sequence[ModelRequest]) -> list[Generation]:
        raise AssertionError("the in-flight path sends each turn on the event loop")

    async def agenerate(self, client: ClientShards, req: ModelRequest,
                        image: ImageSource | None = None) -> Generation:
        png = await image.read() if image is not None else req.image_png
        if png == self.slow and len(req.turns) == 1:
            while not self.gate.is_set():
                await asyncio.sleep(0.01)
        self.log.append((png, len(req.turns)))
        if len(req.turns) == 1:
            return Generation("<think> x </think>\n<answer> Cardiomegaly </answer>", 9)
        return Generation("FINDINGS: Heart: Enlarged.\nIMPRESSION:\n1. Cardiomegaly.", 9)


def test_a_slow_study_holds_up_no_other(tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    rt = configure(load_settings(None, {}, data_dir=tmp_path / "data",
                                 openai_max_in_flight=2, poll_seconds=0.05))
    made = make_prepared(rt.db, 5)
    with rt.db.session() as s:
        slow_id = next(iter(made))
        slow = s.get(Job, slow_id).model_input  # type: ignore[union-attr]
    fake = GatedBackend(slow or b"")
    monkeypatch.setattr(rt, "_backend", fake)
    feeder, told = start_loop(rt)
    # the other slot serves the four other studies, both turns each, one after another
    wait_for(lambda: len(told) == 4, "four studies done beside the slow one")
    assert slow_id not in {j for j, _ in told}
    assert [n for image, n in fake.log if image != slow] == [1, 3] * 4
    fake.gate.set()
    settle(feeder, rt)
    assert told[-1] == (slow_id, 1) and len(told) == 5


def test_the_window_follows_the_engine_not_the_ceiling(tmp_path: Path) -> None:
    """Nothing set (ceiling 4096): an engine of 8 sequences is offered 8 and a short
    queue, read from its gauges, not the ceiling's worth of requests."""
    server = VLLMStandin(StandinConfig(capacity=8)).start()
    try:
        rt = configure(load_settings(None, {}, data_dir=tmp_path / "data",
                                     model_backend="openai", openai_url=server.url,
                                     poll_seconds=0.05))
        assert rt.settings.openai_max_in_flight == 4096
        make_prepared(rt.db, 100, priority=9)
        server.hold()
        feeder, told = start_loop(rt)
        wait_for(lambda: feeder.window.limit == 8 + 2, "a window of 8 slots and 2 waiting")
        assert feeder.window.source == "engine metrics"
        assert server.engine.running == 8 and len(feeder.flights) <= 2 * START
        server.release_held()
        settle(feeder, rt)
        assert server.peak_concurrency == 8 and len(told) == 100
    finally:
        server.stop()


def test_two_workers_sharing_an_engine_settle_on_shares_that_fill_it(tmp_path: Path) -> None:
    server = VLLMStandin(StandinConfig(capacity=16)).start()
    try:
        settings = load_settings(None, {}, data_dir=tmp_path / "data", model_backend="openai",
                                 openai_url=server.url, poll_seconds=0.05)
        a, b = configure(settings), configure(settings)
        a.worker_name, b.worker_name = "gpu-a@test", "gpu-b@test"
        made = make_prepared(a.db, 200, priority=9)
        server.hold()
        feeders = [start_loop(rt)[0] for rt in (a, b)]
        wait_for(lambda: sum(f.window.limit for f in feeders) == 16 + 2,
                 "two windows that together fill 16 slots with 2 waiting")
        assert all(f.flights for f in feeders)  # each has a share
        server.release_held()
        for f, rt in zip(feeders, (a, b), strict=True):
            settle(f, rt)
        with a.db.session() as s:
            by_worker = Counter(s.scalars(select(Job.worker)).all())
        assert sum(by_worker.values()) == len(made) and set(by_worker) == {
            "gpu-a@test", "gpu-b@test"}
        assert server.peak_concurrency == 16
    finally:
        server.stop()


def test_live_requests_reach_the_engine_ahead_of_batch_ones(tmp_path: Path) -> None:
    """Every request carries its job's priority (live 0, batch 9); an engine that
    schedules by priority (vLLM --scheduling-policy priority) starts the live study's
    turns before batch requests that were waiting longer."""
    server = VLLMStandin(StandinConfig(capacity=2, scheduling="priority")).start()
    try:
        rt = runtime_for(tmp_path, server.url, 64)
        batch = make_prepared(rt.db, 6, priority=9)
        server.hold()
        feeder, _ = start_loop(rt)
        wait_for(lambda: server.engine.waiting == 4, "2 batch studies generating, 4 waiting")
        live = make_prepared(rt.db, 1, priority=0, first_seed=500)
        feeder.wake()
        wait_for(lambda: server.engine.waiting == 5, "the live study waiting too")
        server.release_held()
        settle(feeder, rt)
        records = server.chat_requests()
        assert {(r.image_sha256 in live.values(), r.priority) for r in records} == {
            (True, 0), (False, 9)}
        (live_findings,) = [r for r in records if r.image_sha256 in live.values()
                            and r.turn == "findings"]
        waited = [r for r in records if r.turn == "findings" and r.image_sha256 in
                  batch.values() and r.received < live_findings.received]
        later = [r for r in waited if (r.started or 0) > (live_findings.started or 0)]
        assert len(waited) == 6 and len(later) == 4  # it passed all four that waited
    finally:
        server.stop()
