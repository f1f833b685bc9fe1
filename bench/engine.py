"""The engine kept busy: the GPU worker against a vLLM stand-in of fixed capacity.

The stand-in (``tests/vllm_standin.py``, its own process) generates at most C sequences at
once, each holding its slot L seconds, and queues the rest in order: its capacity is C / L
turns per second, C / L / (turns per study) studies per second.  For each C a few hundred
jobs are made ``prepared`` in a fresh database (SQLite in a temp folder, or PostgreSQL with
``--postgres``), then the real GPU worker code runs them to a stored result, each report
published to the embedded broker as the task does:

* ``in flight N``: the ``cxr.infer`` task body (``worker.pipeline.tasks.infer``), which for the
  ``openai`` backend keeps N = CXR_OPENAI_MAX_IN_FLIGHT studies in flight (default 64,
  and N = C where C differs);
* ``batch 8`` (the baseline, same run): the path every backend took before, one
  ``pipeline.infer_batch`` of CXR_GPU_BATCH_SIZE = 8 studies per message, turn 1 for all,
  then turn 2, nothing new until the slowest has finished both.

Prints achieved studies/s, the capacity and their ratio per variant; the stand-in's peak
concurrency says how many sequences the worker really offered.  Ends with
``RESULT engine_ratio_c64=<in flight 64 at C=64>`` (target >= 0.9).  About two minutes.
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from sqlalchemy import func, select  # noqa: E402

from tests.peers import fresh_database  # noqa: E402
from tests.prepared import make_prepared  # noqa: E402
from tests.vllm_standin import StandinProcess, start_subprocess  # noqa: E402
from worker.pipeline import stages as pipeline
from worker.pipeline import tasks  # noqa: E402
from worker.pipeline.celery_app import configure_celery  # noqa: E402
from worker.runtime import Runtime, configure  # noqa: E402
from worker.settings import load_settings  # noqa: E402
from worker.store import jobs
from worker.store.db import Job  # noqa: E402

BATCH = 8  # CXR_GPU_BATCH_SIZE's default: what one GPU worker offered before


@dataclass(frozen=True)
class Outcome:
    label: str
    studies: int
    seconds: float
    turns: int
    peak: int

    def line(self, capacity_turns: float) -> tuple[str, float]:
        rate = self.studies / self.seconds
        turns_per_study = self.turns / self.studies
        capacity = capacity_turns / turns_per_study
        ratio = rate / capacity
        return (f"  {self.label:<14} {self.studies:5d} studies {self.seconds:6.2f} s "
                f"{rate:7.1f} studies/s  capacity {capacity:6.1f}  ratio {ratio:4.2f}  "
                f"peak {self.peak:3d}  turns/study {turns_per_study:.2f}", ratio)


@contextmanager
def worker_runtime(root: Path, url: str, in_flight: int, postgres: bool) -> Iterator[Runtime]:
    """A fresh GPU worker's resources: database, embedded broker, the openai backend."""
    db_url, drop = fresh_database() if postgres else ("", None)
    settings = load_settings(None, {}, data_dir=root, database_url=db_url,
                             model_backend="openai", openai_url=url,
                             openai_max_in_flight=in_flight, gpu_batch_size=BATCH,
                             gpu_batch_wait_seconds=0)
    rt = configure(settings, kind="worker")
    try:
        yield rt
    finally:
        rt.db.engine.dispose()
        if drop is not None:
            drop()


def continuous(rt: Runtime, first: int) -> None:
    tasks.infer.run(first, 1)


def batches(rt: Runtime, first: int) -> None:
    """The old task body, one message after another until nothing waits."""
    while first:
        for j, v in pipeline.infer_batch(rt, first, 1):
            tasks.enqueue_report(j, v)
        with rt.db.session() as s:
            first = s.scalar(select(Job.id).where(Job.state == jobs.PREPARED)
                             .order_by(Job.id).limit(1)) or 0


def run(standin: StandinProcess, root: Path, label: str, in_flight: int, studies: int,
        body: Callable[[Runtime, int], None], postgres: bool) -> Outcome:
    with worker_runtime(root, standin.url, in_flight, postgres) as rt:
        made = make_prepared(rt.db, studies)
        standin.reset()
        start = time.perf_counter()
        body(rt, next(iter(made)))
        seconds = time.perf_counter() - start
        with rt.db.session() as s:
            stored = s.scalar(select(func.count()).select_from(Job)
                              .where(Job.result.is_not(None))) or 0
        if stored != studies:
            raise RuntimeError(f"{label}: {stored} of {studies} studies have a result")
        state = standin.state()
        return Outcome(label, studies, seconds, len(state["requests"]),
                       int(state["peak_concurrency"]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--latency", type=float, default=1.0, help="L: seconds per sequence")
    ap.add_argument("--capacities", default="8,64,256", help="C values")
    ap.add_argument("--waves", type=int, default=5,
                    help="studies per run = waves x in-flight count (at least 48)")
    ap.add_argument("--postgres", action="store_true", help="PostgreSQL, not SQLite")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    lat = args.latency
    ratios: dict[tuple[int, str], float] = {}
    standin = start_subprocess("--capacity", "8", "--latency", str(lat))
    try:
        with tempfile.TemporaryDirectory(prefix="cxr-engine-bench-") as tmp:
            # one embedded broker for every run (kombu keeps its first connection's folder)
            configure_celery(load_settings(None, {}, data_dir=Path(tmp) / "broker-home"))
            for n, cap in enumerate(int(c) for c in args.capacities.split(",")):
                standin.reset(capacity=cap, latency=lat)
                print(f"C = {cap} sequences, L = {lat:g} s: {cap / lat:.0f} turns/s "
                      f"({'SQLite' if not args.postgres else 'PostgreSQL'})", flush=True)
                variants = [(f"batch {BATCH}", BATCH, batches)]
                variants += [(f"in flight {k}", k, continuous)
                             for k in sorted({64, cap})]
                for i, (label, k, body) in enumerate(variants):
                    count = max(48, args.waves * min(k, cap))
                    out = run(standin, Path(tmp) / f"{n}-{i}", label, k, count, body,
                              args.postgres)
                    text, ratios[(cap, label)] = out.line(cap / lat)
                    print(text, flush=True)
    finally:
        standin.stop()
    base = ratios.get((64, f"batch {BATCH}"))
    best = ratios.get((64, "in flight 64"))
    if best is not None and base is not None:
        print(f"at C = 64: in flight 64 gives {best / base:.1f}x the batch path")
        print(f"RESULT engine_ratio_c64={best:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
