"""The GPU worker's continuous pipeline for server backends: N studies in flight.

A server such as vLLM runs every sequence it holds in one continuous batch (64-256 at
once), so what it can give depends on how many requests the gateway keeps open.  The
batch path (``inference.infer_batch``) offers at most ``gpu_batch_size`` studies and waits
for the slowest one's second turn before starting another; here each study runs its two
turns on its own thread (turn 2 the moment its turn 1 returns), and a finished study's
place goes at once to the next prepared job (live before batch, as ``claim_more`` orders
them), up to ``CXR_OPENAI_MAX_IN_FLIGHT``.

The threads only talk to the server.  Every database change (claim, result, retry,
failure) happens on the calling thread through the batch path's own functions, so the
transitions, the holder rules and the stored payload are the batch path's.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from models.backend import BackendError
from models.study import StudyResult, run_study
from worker.pipeline import claims, inference
from worker.runtime import Runtime
from worker.store import jobs
from worker.store.db import now

log = logging.getLogger(__name__)

Pair = tuple[int, int]
Flights = dict[Future[StudyResult], tuple[Pair, int]]


def infer_continuous(rt: Runtime, job_id: int, version: int,
                     on_done: Callable[[list[Pair]], None]) -> list[Pair]:
    """Keep up to ``openai_max_in_flight`` studies running while any waits; the jobs that
    now have a result, in the order they landed.

    ``on_done`` hears of the jobs whose results were just stored, so their reports do not
    wait for the rest.  Once ``rt.stopping`` is set nothing more is claimed and the studies in
    flight finish (the shutdown grace bounds how long).
    """
    limit = rt.settings.openai_max_in_flight
    flights: Flights = {}
    landed: list[Pair] = []
    claimed = [(job_id, version)] if claims.claim_for_inference(rt, job_id, version) else []
    finished: list[tuple[tuple[Pair, int], Future[StudyResult]]] = []
    pool = ThreadPoolExecutor(max_workers=limit, thread_name_prefix="inflight")
    try:
        while True:
            if not rt.stopping.is_set():
                claimed += claims.claim_more(rt, limit - len(flights) - len(claimed))
            for j, v, image in inference.model_inputs(rt, claimed):
                flights[pool.submit(run_study, rt.backend, image)] = ((j, v), len(flights) + 1)
            claimed = []
            if finished:  # stored after the freed places are refilled, so none idles
                stored = land(rt, finished)
                finished = []
                if stored:
                    landed += stored
                    on_done(stored)
            if not flights:
                return landed
            done, _ = wait(flights, timeout=rt.settings.poll_seconds,
                           return_when=FIRST_COMPLETED)
            finished = [(flights.pop(future), future) for future in done]
    except BaseException as exc:
        held = claimed + [pair for (pair, _), _ in finished] + [p for p, _ in flights.values()]
        let_go(rt, held, exc)
        raise
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def land(rt: Runtime, finished: list[tuple[tuple[Pair, int], Future[StudyResult]]]
         ) -> list[Pair]:
    """Store the finished studies as the batch path would (one transaction for all); a
    backend failure is retried later (transient) or fails its job (permanent), exactly
    as for a batch of one.  The jobs stored."""
    results = []
    for (pair, offered), future in finished:
        job_id, version = pair
        try:
            result = future.result()
        except BackendError as exc:
            claims.retry_inference_later(rt, [pair], str(exc), exc.permanent)
            continue
        except Exception as exc:  # noqa: BLE001 - one study's defect must not stop others
            log.exception("job %d v%d: inference failed", job_id, version)
            claims.fail(rt, job_id, version, f"inference failed: {type(exc).__name__}: {exc}")
            continue
        # each study is its own request group; its "batch size" is how many were in flight
        results.append((pair, result, uuid.uuid4().hex, offered))
    return inference.store_results(rt, results) if results else []


def let_go(rt: Runtime, held: list[Pair], exc: BaseException) -> None:
    """The loop itself broke (the database or the process going away): put the jobs it
    holds back to wait, uncounted, so any worker may take them without waiting for this
    one to be declared dead.  Best effort: without a database the holder rules decide."""
    error = f"inference interrupted: {type(exc).__name__}"
    due = now() + rt.settings.retry_backoff_seconds
    for job_id, version in held:
        try:
            with rt.db.session() as s:
                jobs.requeue(s, job_id, version, (rt.worker_name,), (jobs.INFERRING,),
                             jobs.PREPARED, error, count_attempt=False, next_attempt_at=due)
        except Exception as err:  # noqa: BLE001 - nothing more to do from here
            log.warning("job %d v%d: cannot let go (%s)", job_id, version, err)
