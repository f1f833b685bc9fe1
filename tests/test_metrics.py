"""Process metrics stay bounded: only live processes have series, however many came and
went (names are unique per process, so every restart is a new name)."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from worker.ops.metrics import GatewayCollector, registry
from worker.runtime import Runtime, configure
from worker.settings import load_settings
from worker.store.db import WorkerProcess, now
from worker.store.liveness import Liveness

TIMEOUT = 30.0


@pytest.fixture
def rt(tmp_path: Path) -> Runtime:
    return configure(load_settings(None, {}, data_dir=tmp_path / "data",
                                   liveness_timeout_seconds=TIMEOUT))


def samples(collector: GatewayCollector) -> dict[str, list[dict[str, str]]]:
    """Every sample's labels, by metric, as a Prometheus scrape of ``/metrics`` reads them."""
    text = generate_latest(registry(collector)).decode()
    out: dict[str, list[dict[str, str]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append({**sample.labels,
                                                    "value": str(sample.value)})
    return out


def counts(m: dict[str, list[dict[str, str]]]) -> tuple[dict[str, int], dict[str, int]]:
    """Live processes by kind, and by queue taken."""
    return ({x["kind"]: int(float(x["value"])) for x in m["cxr_workers_alive"]},
            {x["queue"]: int(float(x["value"])) for x in m["cxr_queue_consumers"]})


def short_lives(rt: Runtime, generation: int, count: int) -> None:
    """``count`` processes that registered and are gone: half stopped cleanly, half
    killed (their beats simply ended longer ago than the liveness timeout)."""
    for i in range(count // 2):
        life = Liveness(rt.db, f"worker-{generation}-{i}@a", "worker", "gpu", interval=60)
        life.start()
        life.stop()
    with rt.db.session() as s:
        for i in range(count // 2, count):
            s.add(WorkerProcess(name=f"worker-{generation}-{i}@b", kind="worker", host="b",
                                pid=10_000 + i, queues="gpu", started_at=now() - 300,
                                last_beat=now() - TIMEOUT - 5))
        s.commit()


def test_worker_series_are_the_live_processes_however_many_have_died(rt: Runtime) -> None:
    collector = GatewayCollector(rt.db, rt.spool.root, liveness_timeout=TIMEOUT)
    live = [Liveness(rt.db, name, kind, queues, interval=60) for name, kind, queues in
            (("serve-1@a", "serve", "cpu"), ("worker-gpu0-7@a", "worker", "gpu"),
             ("worker-gpu1-8@a", "worker", "gpu"))]
    for life in live:
        life.start()
    try:
        for generation in range(3):
            short_lives(rt, generation, 40)
            m = samples(collector)
            with rt.db.session() as s:
                rows = s.scalar(select(func.count()).select_from(WorkerProcess))
            assert rows == 3 + 40 * (generation + 1)  # the table keeps them; metrics do not
            for metric in ("cxr_worker_up", "cxr_worker_last_beat_timestamp_seconds"):
                assert sorted(x["name"] for x in m[metric]) == \
                    ["serve-1@a", "worker-gpu0-7@a", "worker-gpu1-8@a"], metric
            assert {x["value"] for x in m["cxr_worker_up"]} == {"1.0"}
            assert counts(m) == ({"serve": 1, "worker": 2}, {"cpu": 1, "gpu": 2})
        live[2].stop()  # a live process that stops drops out at the next scrape
        m = samples(collector)
        assert sorted(x["name"] for x in m["cxr_worker_up"]) == ["serve-1@a",
                                                                 "worker-gpu0-7@a"]
        live[1].stop()  # no GPU consumer left: the counts say 0 rather than go absent
        assert counts(samples(collector)) == ({"serve": 1, "worker": 0}, {"cpu": 1, "gpu": 0})
    finally:
        for life in live:
            life.stop()


def test_each_live_gpu_workers_engine_window_is_a_metric_and_on_the_overview(
        rt: Runtime) -> None:
    from worker.ops.overview import overview
    from worker.store import engine_windows

    collector = GatewayCollector(rt.db, rt.spool.root, liveness_timeout=TIMEOUT)
    live = Liveness(rt.db, "worker-gpu0-1@a", "worker", "gpu", interval=60)
    live.start()
    short_lives(rt, 0, 2)  # a dead worker's last figures are no one's now
    try:
        with rt.db.session() as s:
            engine_windows.record(s, "worker-gpu0-1@a", engine_windows.Figures(
                window=266, in_flight=260, peak=300, ceiling=4096,
                steered_by="engine metrics"))
            engine_windows.record(s, "worker-0-1@b", engine_windows.Figures(
                window=9, in_flight=9, peak=9, ceiling=4096, steered_by="latency"))
        m = samples(collector)
        assert m["cxr_engine_in_flight_window"] == [
            {"worker": "worker-gpu0-1@a", "steered_by": "engine metrics", "value": "266.0"}]
        assert m["cxr_engine_in_flight"] == [{"worker": "worker-gpu0-1@a", "value": "260.0"}]
        assert m["cxr_engine_in_flight_ceiling"][0]["value"] == "4096.0"
        assert overview(rt.db, liveness_timeout=TIMEOUT)["engines"] == [
            {"worker": "worker-gpu0-1@a", "window": 266, "in_flight": 260, "peak": 300,
             "ceiling": 4096, "steered_by": "engine metrics"}]
    finally:
        live.stop()
