"""The engine kept full on the defaults: the GPU worker against a vLLM stand-in of fixed size.

The stand-in (``tests/vllm_standin.py``, its own process) generates at most C sequences at
once, each holding its slot L seconds, queues the rest, and publishes vLLM's two load
gauges on ``/metrics`` as vLLM does by default: its capacity is C / L turns per second.
For each C a few hundred (or thousand) jobs are made ``prepared`` in a fresh database
(SQLite in a temp folder, or PostgreSQL with ``--postgres``), then the real GPU worker code
runs them to a stored result, each report published to the embedded broker as the task
does.  Variants, all in the same run:

* ``default``: nothing set: the ``cxr.infer`` task wakes the engine feeder, whose window
  finds the engine's size (``models.engine_window``; ceiling CXR_OPENAI_MAX_IN_FLIGHT);
* ``fixed 64`` (a baseline): the feeder held at 64 in flight, the previous default;
* ``batch 8`` (a baseline): one ``infer_batch`` of CXR_GPU_BATCH_SIZE = 8 studies per
  message, turn 1 for all, then turn 2, nothing new until the slowest has finished both;
* ``two workers`` (at C = 256): two feeders (two worker names) sharing one stand-in, on
  the defaults, with no setting telling either about the other.

Each line gives the achieved studies/s, the capacity, their ratio over the whole run (its
ramp and its tail included), ``busy`` (the engine's occupancy while studies waited to
start: from its first request until the last study's first turn began), the stand-in's peak
concurrency and the feeders' peak in flight (memory and threads at 1,024 in flight:
``bench/engine_memory.py``, a real worker process).  L defaults to max(1, C / 128) s so
that the stand-in's Python does not become the limit on two cores.  Ends with ``RESULT
engine_ratio_c<C>=...`` lines (target >= 0.9 each).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from sqlalchemy import func, select  # noqa: E402

from tests.peers import fresh_database  # noqa: E402
from tests.prepared import make_prepared  # noqa: E402
from tests.vllm_standin import StandinProcess, start_subprocess  # noqa: E402
from worker.pipeline import inflight, tasks  # noqa: E402
from worker.pipeline import stages as pipeline  # noqa: E402
from worker.pipeline.celery_app import configure_celery  # noqa: E402
from worker.runtime import Runtime, configure  # noqa: E402
from worker.settings import load_settings  # noqa: E402
from worker.store import jobs  # noqa: E402
from worker.store.db import Job  # noqa: E402

BATCH = 8  # CXR_GPU_BATCH_SIZE's default: what one GPU worker offered before in-flight
OLD_DEFAULT = 64  # CXR_OPENAI_MAX_IN_FLIGHT before the window found the engine


@dataclass(frozen=True)
class Outcome:
    label: str
    studies: int
    seconds: float
    turns: int
    peak: int  # the stand-in's most sequences generating at once
    in_flight: int  # the feeders' most studies in flight (summed), 0 for the batch path
    busy: float  # the engine's occupancy while studies waited to start (see ``busy``)

    def line(self, capacity_turns: float) -> tuple[str, float]:
        rate = self.studies / self.seconds
        turns_per_study = self.turns / self.studies
        capacity = capacity_turns / turns_per_study
        ratio = rate / capacity
        return (f"  {self.label:<12} {self.studies:5d} studies {self.seconds:7.2f} s "
                f"{rate:7.1f} studies/s  capacity {capacity:6.1f}  ratio {ratio:4.2f}  "
                f"busy {self.busy:4.2f}  engine peak {self.peak:4d}  "
                f"in flight peak {self.in_flight:4d}", ratio)


def busy(requests: list[dict[str, Any]], capacity: int) -> float:
    """The engine's mean occupancy from its first request until the last study's first
    turn started generating: the span in which some study always waited to start, so an idle slot
    was the worker's doing (after it, only the last studies' own turns remain, the tail
    any finite run has; the whole-run ratio includes that tail and the ramp)."""
    chats = [r for r in requests if r.get("started") and r.get("finished")]
    start = min(r["received"] for r in chats)
    end = max(r["started"] for r in chats if r["turn"] == "findings")
    if end <= start:
        return 0.0
    held = sum(max(0.0, min(r["finished"], end) - max(r["started"], start)) for r in chats)
    return held / (capacity * (end - start))


@contextmanager
def runtimes(root: Path, url: str, count: int, ceiling: int | None,
             postgres: bool) -> Iterator[list[Runtime]]:
    """``count`` GPU workers' resources on one fresh database (their own worker names)."""
    db_url, drop = fresh_database() if postgres else ("", None)
    extra = {} if ceiling is None else {"openai_max_in_flight": ceiling}
    settings = load_settings(None, {}, data_dir=root, database_url=db_url,
                             model_backend="openai", openai_url=url, gpu_batch_size=BATCH,
                             gpu_batch_wait_seconds=0, **extra)
    made = [configure(settings, kind="worker") for _ in range(count)]
    for i, rt in enumerate(made):
        rt.worker_name = f"bench-gpu-{i}@{root.name}"
    try:
        yield made
    finally:
        for rt in made:
            inflight.drain(rt, 60)
            rt.db.engine.dispose()
        if drop is not None:
            drop()


def stored(rt: Runtime) -> int:
    with rt.db.session() as s:
        return s.scalar(select(func.count()).select_from(Job)
                        .where(Job.result.is_not(None))) or 0


def feed(rts: list[Runtime], studies: int) -> int:
    """Every worker's feeder woken (as its ``cxr.infer`` task does) until all are stored;
    their summed peak in flight."""
    feeders = [inflight.feeder(rt, tasks.report_soon) for rt in rts]
    for f in feeders:
        f.wake()
    while stored(rts[0]) < studies:
        time.sleep(0.05)
    return sum(f.peak for f in feeders)


def batches(rts: list[Runtime], studies: int) -> int:
    """The batch path, one message after another until nothing waits."""
    rt = rts[0]
    while True:
        with rt.db.session() as s:
            first = s.scalar(select(Job.id).where(Job.state == jobs.PREPARED)
                             .order_by(Job.id).limit(1))
        if not first:
            return 0
        for j, v in pipeline.infer_batch(rt, first, 1):
            tasks.enqueue_report(j, v)


def run(standin: StandinProcess, root: Path, label: str, studies: int, workers: int,
        ceiling: int | None, body: Callable[[list[Runtime], int], int],
        postgres: bool) -> Outcome:
    with runtimes(root, standin.url, workers, ceiling, postgres) as rts:
        make_prepared(rts[0].db, studies, priority=9)
        standin.reset()
        start = time.perf_counter()
        in_flight = body(rts, studies)
        seconds = time.perf_counter() - start
        if stored(rts[0]) != studies:
            raise RuntimeError(f"{label}: {stored(rts[0])} of {studies} studies have a result")
        state = standin.state()
        return Outcome(label, studies, seconds, len(state["requests"]),
                       int(state["peak_concurrency"]), in_flight,
                       busy(state["requests"], int(state["capacity"])))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--latency", type=float, default=None,
                    help="L: seconds per sequence (default max(1, C / 128))")
    ap.add_argument("--capacities", default="8,64,256,1024", help="C values")
    ap.add_argument("--waves", type=int, default=8,
                    help="studies per run = waves x what the variant can keep in flight")
    ap.add_argument("--postgres", action="store_true", help="PostgreSQL, not SQLite")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    ratios: dict[str, float] = {}
    busy_of: dict[str, float] = {}
    standin = start_subprocess("--capacity", "8", "--latency", "1")
    try:
        with tempfile.TemporaryDirectory(prefix="cxr-engine-bench-") as tmp:
            # one embedded broker for every run (kombu keeps its first connection's folder)
            configure_celery(load_settings(None, {}, data_dir=Path(tmp) / "broker-home"))
            for n, cap in enumerate(int(c) for c in args.capacities.split(",")):
                lat = args.latency or max(1.0, cap / 128)
                standin.reset(capacity=cap, latency=lat)
                print(f"C = {cap} sequences, L = {lat:g} s: {cap / lat:.0f} turns/s "
                      f"({'PostgreSQL' if args.postgres else 'SQLite'})", flush=True)
                variants: list[tuple[str, int, int, int | None, Callable[..., int]]] = [
                    (f"batch {BATCH}", 1, BATCH, None, batches),
                    (f"fixed {OLD_DEFAULT}", 1, OLD_DEFAULT, OLD_DEFAULT, feed),
                    ("default", 1, cap, None, feed)]
                if cap == 256:
                    variants.append(("two workers", 2, cap, None, feed))
                for i, (label, workers, reach, ceiling, body) in enumerate(variants):
                    count = max(48, args.waves * min(reach, cap))
                    out = run(standin, Path(tmp) / f"{n}-{i}", label, count, workers,
                              ceiling, body, args.postgres)
                    text, ratios[f"{label}@{cap}"] = out.line(cap / lat)
                    busy_of[f"{label}@{cap}"] = out.busy
                    print(text, flush=True)
    finally:
        standin.stop()
    for key, ratio in ratios.items():
        label, _, at = key.partition("@")
        base = ratios.get(f"fixed {OLD_DEFAULT}@{at}")
        if label == "default" and base:
            print(f"at C = {at}: the default gives {ratio / base:.2f}x fixed {OLD_DEFAULT}")
            print(f"RESULT engine_ratio_c{at}={ratio:.2f} engine_busy_c{at}="
                  f"{busy_of[key]:.2f}")
        if label == "two workers":
            print(f"RESULT engine_ratio_two_workers_c{at}={ratio:.2f} "
                  f"engine_busy_two_workers_c{at}={busy_of[key]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
