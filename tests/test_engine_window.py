"""The in-flight window, the engine's gauges and the embedded queue's order, without servers.

``SimulatedEngine`` is arithmetic, not a server: C slots, each request holding its slot for
one tick, the rest queued; the windows read its gauges between ticks as the feeder does.
The feeder against a real HTTP stand-in is ``tests/test_engine.py``.
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from kombu import Connection

from models.backend import ModelRequest, Turn
from models.engine_window import START, EngineLoad, InFlightWindow, target_waiting
from models.openai_compat import ImageSource, OpenAIBackend
from models.vllm_metrics import parse_load
from tests.vllm_standin import metrics_page
from worker.pipeline.embedded_broker import TRANSPORT, priority_of


class SimulatedEngine:
    """C slots; every request in a slot finishes at the end of the tick and its worker
    sends another at once if its window allows (a worker never runs out of work)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity

    def load(self, in_flight: list[int]) -> EngineLoad:
        total = sum(in_flight)
        return EngineLoad(running=min(total, self.capacity),
                          waiting=max(0, total - self.capacity))


def run_windows(capacity: int, windows: list[InFlightWindow], ticks: int) -> list[EngineLoad]:
    engine, loads = SimulatedEngine(capacity), []
    in_flight = [w.limit for w in windows]
    for _ in range(ticks):
        load = engine.load(in_flight)
        loads.append(load)
        for i, window in enumerate(windows):
            window.on_load(load, in_flight[i])
        in_flight = [w.limit for w in windows]
    return loads


@pytest.mark.parametrize("capacity", [8, 64, 256, 1024, 4000])
def test_one_window_finds_the_engine_full_with_a_short_queue(capacity: int) -> None:
    window = InFlightWindow(ceiling=4096)
    loads = run_windows(capacity, [window], 40)
    last = loads[-1]
    assert last.running == min(capacity, 4096)  # full (or at the site's ceiling)
    assert last.waiting <= 2 * target_waiting(last.running)  # a short queue
    assert window.source == "engine metrics"


@pytest.mark.parametrize("workers", [2, 3, 5])
def test_workers_sharing_an_engine_settle_where_together_they_fill_it(workers: int) -> None:
    windows = [InFlightWindow(ceiling=4096) for _ in range(workers)]
    loads = run_windows(256, windows, 60)
    settled = loads[-10:]
    assert all(load.running == 256 for load in settled)
    assert all(load.waiting <= 2 * target_waiting(256) for load in settled)
    assert all(w.limit >= 1 for w in windows)


def test_a_window_never_passes_its_ceiling_and_an_idle_one_does_not_grow() -> None:
    window = InFlightWindow(ceiling=100)
    run_windows(1024, [window], 30)
    assert window.limit == 100
    idle = InFlightWindow(ceiling=4096)
    for _ in range(30):  # the engine is empty, but this worker uses 3 of its window
        idle.on_load(EngineLoad(running=3, waiting=0), in_flight=3)
    assert idle.limit == START


def test_latency_grows_the_window_until_replies_slow_then_cuts_once_per_round_trip() -> None:
    window = InFlightWindow(ceiling=4096)
    t = 0.0
    for _ in range(48):  # replies as fast as the fastest: a window in use grows by one each
        window.on_reply("findings", 1.0, window.limit, t)
    assert window.limit == START + 48 and window.slow_start
    before = window.limit
    window.on_reply("findings", 2.0, window.limit, t)  # twice as slow: a queue
    assert window.limit == int(before * 0.75) and not window.slow_start
    cut = window.limit
    window.on_reply("findings", 2.0, window.limit, t + 0.5)  # same round trip: same news
    assert window.limit == cut
    window.on_reply("findings", 2.0, window.limit, t + 1.5)
    assert window.limit == int(cut * 0.75)


def test_a_429_halves_the_window_and_turn_kinds_keep_their_own_pace() -> None:
    window = InFlightWindow(ceiling=4096, start=64)
    window.on_reply("findings", 1.0, 64, 0.0)
    window.on_reply("report", 3.0, 64, 0.0)  # a longer turn is not a queue
    assert window.limit >= 64
    grown = window.limit
    window.on_overload(10.0)
    assert window.limit == grown // 2


VLLM_PAGE = """# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="nvidia/NV-Reason-CXR-3B"} 250.0
vllm:num_requests_running{engine="1",model_name="nvidia/NV-Reason-CXR-3B"} 6.0
vllm:num_requests_running{engine="0",model_name="other/model"} 99.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="nvidia/NV-Reason-CXR-3B"} 7.0
# HELP vllm:gpu_cache_usage_perc GPU KV-cache usage.
# TYPE vllm:gpu_cache_usage_perc gauge
vllm:gpu_cache_usage_perc{engine="0",model_name="nvidia/NV-Reason-CXR-3B"} 0.8
"""


def test_the_gauges_are_summed_over_engines_of_our_model_only() -> None:
    assert parse_load(VLLM_PAGE, "nvidia/NV-Reason-CXR-3B") == EngineLoad(256.0, 7.0)
    assert parse_load(VLLM_PAGE, None) == EngineLoad(355.0, 7.0)


@pytest.mark.parametrize("page", ["", "not prometheus {{{", "up 1\n",
                                  "vllm:num_requests_running 3\n"])
def test_a_page_without_both_gauges_is_no_load(page: str) -> None:
    assert parse_load(page, "m") is None


def test_the_standin_publishes_the_gauges_in_vllms_names() -> None:
    assert parse_load(metrics_page("m", 3, 2), "m") == EngineLoad(3.0, 2.0)


def test_the_embedded_queue_hands_out_live_messages_before_batch_ones(tmp_path: Path) -> None:
    """kombu's filesystem consumer takes the first name in sorted order: names start with
    the priority, then the time, so live (0) comes before batch (9), each oldest first."""
    folder = tmp_path / "queue"
    folder.mkdir()
    options = {"data_folder_in": str(folder), "data_folder_out": str(folder),
               "control_folder": str(tmp_path)}
    sent = [(9, "batch-1"), (9, "batch-2"), (0, "live-1"), (5, "middle"), (0, "live-2")]
    with Connection(transport=TRANSPORT, transport_options=options) as conn:
        queue = conn.SimpleQueue("cpu")
        for priority, body in sent:
            queue.put(body, priority=priority)
        assert all(name.partition(".")[2] == "cpu.msg" for name in os.listdir(folder))
        got = []
        for _ in sent:
            message = queue.get(timeout=5)
            got.append(message.payload)
            message.ack()
        queue.close()
    assert got == ["live-1", "live-2", "middle", "batch-1", "batch-2"]
    assert priority_of({"properties": {}}) == 0 and priority_of({}) == 0


@pytest.mark.parametrize("size", [0, 1, 2, 3, 4, 49151, 49152, 49153, 200_000])
def test_the_streamed_body_is_the_serialised_body_byte_for_byte(size: int) -> None:
    """The feeder streams each body (the image's base64 made as it is sent); the server
    must read exactly what the one-off client sends, and the length declared up front."""
    backend = OpenAIBackend("http://127.0.0.1:9", "nvidia/NV-Reason-CXR-3B",
                            revision="0" * 40)
    image = bytes(i % 251 for i in range(size))
    req = ModelRequest(image, (Turn("user", 'Find "abnormalities".'), Turn("assistant", "x"),
                               Turn("user", "Write a structured report.")), 64, priority=9)
    reads: list[int] = []

    async def read() -> bytes:  # the feeder reads the job's row as the body is sent
        reads.append(size)
        return image

    async def whole(length_and_parts: tuple[int, Any]) -> tuple[int, bytes]:
        length, parts = length_and_parts
        return length, b"".join([part async for part in parts])

    inline = asyncio.run(whole(backend.streamed_body(req)))
    lazy = asyncio.run(whole(backend.streamed_body(replace(req, image_png=b""),
                                                   ImageSource(size, read))))
    assert inline == lazy == (len(backend.request_body(req)), backend.request_body(req))
    assert reads == [size]  # read once, only when sent
    assert json.loads(inline[1])["priority"] == 9
