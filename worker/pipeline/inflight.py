"""The GPU worker's engine feeder: studies in flight on a server backend, sized by the engine.

A server such as vLLM runs every sequence it holds in one continuous batch, so what it
gives depends on how many requests the gateway keeps open, and the right number is the
engine's (``models.engine_window`` finds it).  The feeder is one background thread per
worker process running one asyncio loop: each study is a coroutine that sends its two
turns through pooled keep-alive httpx clients (``models.openai_compat.ClientShards``;
turn 2 the moment turn 1 returns), and a finished
study's place goes at once to the next prepared job, live before batch, each request
carrying the job's priority for the engine's own scheduler.

Why a thread of its own rather than the ``cxr.infer`` task's body: on the embedded
default, serve's one in-process Celery worker takes every queue, and a task that stayed
inside the loop until nothing was in flight held the only worker there is: no study was
prepared meanwhile, so the engine saw one at a time.  The task now only wakes the feeder
and returns; preparing and reporting go on beside it.

Every database change (claim, result, retry, failure) is made through the batch path's
functions (``worker.pipeline.claims``, ``inference``) on the feeder's two worker threads
(one claims, one stores results and publishes their reports), so the transitions, the
holder rules and the stored payload are the batch path's, the event loop never waits on
a commit, and claiming the next studies never waits behind storing the last ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import httpx

from models.backend import BackendError, EngineBackend, Generation, ModelRequest
from models.engine_window import InFlightWindow
from models.openai_compat import ClientShards, ImageSource
from models.study import StudyResult, arun_study
from models.vllm_metrics import read_load
from worker.pipeline import claims, inference
from worker.runtime import Runtime
from worker.store import engine_windows, jobs
from worker.store.db import now

log = logging.getLogger(__name__)

Pair = tuple[int, int]
T = TypeVar("T")
LIVE_HEADROOM = 8  # live studies may pass a full window by this many (never the ceiling)
METRICS_SECONDS = 0.25  # how often the engine's gauges are read while studies are in flight
RECORD_SECONDS = 2.0  # how often the figures are written for the dashboard and metrics
OVERLOADED = (429, 503)


@dataclass(frozen=True)
class Flight:
    pair: Pair
    offered: int  # studies in flight when it was sent (stored as its "batch size")


class Feeder:
    """Keeps the engine full from the database until the process ends (see module doc)."""

    def __init__(self, rt: Runtime, on_done: Callable[[list[Pair]], None]) -> None:
        self.rt = rt
        self.backend = cast(EngineBackend, rt.backend)
        self.on_done = on_done
        self.window = InFlightWindow(rt.settings.openai_max_in_flight)
        self.peak = 0
        self.flights: dict[asyncio.Task[StudyResult], Flight] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._awake: asyncio.Event | None = None
        self._closing = False
        self._identified = False
        self._ready = threading.Event()
        self._db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="feeder-db")
        # results are stored (and their reports published) on a thread of their own, so
        # that claiming the next studies never waits behind them
        self._lander = ThreadPoolExecutor(max_workers=1, thread_name_prefix="feeder-land")
        self._landing: set[asyncio.Future[None]] = set()
        self._thread = threading.Thread(target=self._main, name="engine-feeder", daemon=True)

    def start(self) -> Feeder:
        self._thread.start()
        self._ready.wait(timeout=30)
        return self

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def wake(self) -> None:
        """Look for prepared work now (thread-safe; the task calls it)."""
        loop, awake = self._loop, self._awake
        if loop is not None and awake is not None:
            with contextlib.suppress(RuntimeError):  # the loop just closed
                loop.call_soon_threadsafe(awake.set)

    def stop(self, grace: float) -> None:
        """Claim nothing more, let what is in flight finish within ``grace`` seconds, then
        put back what still is (uncounted: any worker may take it at once)."""
        self._closing = True
        self.wake()
        self._thread.join(timeout=max(0.0, grace))
        if self._thread.is_alive():
            let_go(self.rt, [f.pair for f in list(self.flights.values())],
                   TimeoutError("shutdown grace over"))

    # -- the loop -------------------------------------------------------------------------

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except Exception:  # noqa: BLE001 - logged; the next cxr.infer starts a new feeder
            log.exception("%s: the engine feeder stopped", self.rt.worker_name)
        finally:
            self._ready.set()
            self._db.shutdown(wait=False)
            self._lander.shutdown(wait=False)

    async def _in_db(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._db, functools.partial(fn, *args))

    async def _run(self) -> None:
        self._loop, self._awake = asyncio.get_running_loop(), asyncio.Event()
        self._ready.set()
        connections = self.window.ceiling + LIVE_HEADROOM
        async with self.backend.async_client(connections) as client, \
                httpx.AsyncClient(timeout=5.0) as gauges:
            steer = asyncio.create_task(self._steer(gauges))
            try:
                await self._feed(client)
            except BaseException as exc:
                await self._in_db(let_go, self.rt, [f.pair for f in self.flights.values()],
                                  exc)
                raise
            finally:
                steer.cancel()
                for task in self.flights:
                    task.cancel()
                await asyncio.gather(*self._landing, return_exceptions=True)
                await self._in_db(self._record)

    def _stopping(self) -> bool:
        return self._closing or self.rt.stopping.is_set()

    async def _feed(self, client: ClientShards) -> None:
        finished: list[tuple[Flight, StudyResult | BaseException]] = []
        last_live_look = 0.0
        assert self._awake is not None
        while True:
            if not self._stopping():
                room = self.window.limit - len(self.flights)
                if room > 0 or time.monotonic() - last_live_look >= self.rt.settings.poll_seconds:
                    last_live_look = time.monotonic()
                    await self._refill(client, room)
            if finished:
                landing = asyncio.get_running_loop().run_in_executor(
                    self._lander, self._land, finished)
                self._landing.add(landing)
                landing.add_done_callback(self._landing.discard)
                finished = []
            if not self.flights and self._stopping():
                await asyncio.gather(*self._landing)
                return
            self._awake.clear()
            woken = asyncio.ensure_future(self._awake.wait())
            idle = self.rt.settings.poll_seconds * (1 if self.flights else 10)
            done, _ = await asyncio.wait([*self.flights, woken], timeout=idle,
                                         return_when=asyncio.FIRST_COMPLETED)
            woken.cancel()
            for task in done:
                study = cast(asyncio.Task[StudyResult], task)
                flight = self.flights.pop(study, None)
                if flight is not None:
                    finished.append((flight, study.exception() or study.result()))

    async def _refill(self, client: ClientShards, room: int) -> None:
        """Claim what fits: up to the window, and live studies past a full one."""
        live = min(self.window.ceiling, self.window.limit + LIVE_HEADROOM) - len(self.flights)
        for pair, size, priority in await self._in_db(self._claim, room, live):
            task = asyncio.create_task(self._study(client, pair[0], size, priority))
            self.flights[task] = Flight(pair, len(self.flights) + 1)
        self.peak = max(self.peak, len(self.flights))

    async def _study(self, client: ClientShards, job_id: int, size: int,
                     priority: int) -> StudyResult:
        """Both turns of one study; its image is read from the job's row for each request
        as it is sent, so a study waiting on the engine holds no image (``ImageSource``)."""
        if not self._identified:  # every result is stored under the server's identity
            await self._in_db(self.backend.identify)
            self._identified = True
        image = ImageSource(size, functools.partial(self._in_db, claims.model_input, self.rt,
                                                    job_id))
        return await arun_study(self.backend, functools.partial(self._ask, client, image),
                                b"", priority)

    async def _ask(self, client: ClientShards, image: ImageSource,
                   req: ModelRequest) -> Generation:
        """One request, its outcome told to the window."""
        kind = "findings" if len(req.turns) == 1 else "report"
        try:
            gen = await self.backend.agenerate(client, req, image)
        except BackendError as exc:
            if exc.status in OVERLOADED:
                self.window.on_overload(time.monotonic())
            raise
        self.window.on_reply(kind, gen.seconds, len(self.flights), time.monotonic())
        return gen

    async def _steer(self, gauges: httpx.AsyncClient) -> None:
        """Read the engine's gauges while studies are in flight; write the figures."""
        misses, recorded, tick = 0, 0.0, 0
        while True:
            await asyncio.sleep(METRICS_SECONDS)
            tick += 1
            if self.flights and (misses < 3 or tick % 40 == 0):  # no gauges: ask rarely
                load = await read_load(gauges, self.backend.metrics_url, self.backend.model)
                misses = 0 if load is not None else misses + 1
                if load is not None:
                    self.window.on_load(load, len(self.flights))
                elif misses >= 3:
                    self.window.source = "latency"
            if time.monotonic() - recorded >= RECORD_SECONDS:
                recorded = time.monotonic()
                with contextlib.suppress(Exception):  # figures are for display only
                    await self._in_db(self._record)

    # -- on the database and landing threads ---------------------------------------------

    def _claim(self, room: int, live: int) -> list[tuple[Pair, int, int]]:
        """Claimed jobs with their model input's size and priority; one without a model
        input fails (prepare stores it: its absence is a defect no retry mends)."""
        rt = self.rt
        claimed = claims.claim_more(rt, room) if room > 0 else \
            claims.claim_more(rt, live, below_priority=jobs.BATCH_PRIORITY)
        stored = claims.stored_input_sizes(rt, claimed) if claimed else {}
        runnable = []
        for j, v in claimed:
            size, priority = stored.get(j, (0, 0))
            if size:
                runnable.append(((j, v), size, priority))
            else:
                claims.fail(rt, j, v, "no model input stored for the job")
        return runnable

    def _land(self, finished: list[tuple[Flight, StudyResult | BaseException]]) -> None:
        """On the landing thread: store, then tell ``on_done``; a failure (the database
        gone) puts the jobs back to wait, as the loop breaking would."""
        try:
            stored = land(self.rt, [(f.pair, f.offered, outcome) for f, outcome in finished])
        except Exception as exc:  # noqa: BLE001 - the feeder goes on; the jobs wait
            log.warning("%d result(s) not stored (%s); their jobs wait for a retry",
                        len(finished), type(exc).__name__)
            let_go(self.rt, [f.pair for f, _ in finished], exc)
            return
        if stored:
            try:
                self.on_done(stored)
            except Exception:  # noqa: BLE001 - stored; the lost-message sweep reports them
                log.exception("%d stored result(s): reporting them failed", len(stored))

    def _record(self) -> None:
        figures = engine_windows.Figures(self.window.limit, len(self.flights), self.peak,
                                         self.window.ceiling, self.window.source)
        with self.rt.db.session() as s:
            engine_windows.record(s, self.rt.worker_name, figures)


def land(rt: Runtime, finished: list[tuple[Pair, int, StudyResult | BaseException]]
         ) -> list[Pair]:
    """Store the finished studies as the batch path would (one transaction for all); a
    backend failure is retried later (transient) or fails its job (permanent), exactly
    as for a batch of one.  The jobs stored."""
    results = []
    for pair, offered, outcome in finished:
        job_id, version = pair
        if isinstance(outcome, BackendError):
            claims.retry_inference_later(rt, [pair], str(outcome), outcome.permanent)
        elif isinstance(outcome, BaseException):  # one study's defect must not stop others
            log.error("job %d v%d: inference failed", job_id, version, exc_info=outcome)
            claims.fail(rt, job_id, version,
                        f"inference failed: {type(outcome).__name__}: {outcome}")
        else:  # each study is its own request group; its "batch size", how many flew
            results.append((pair, outcome, uuid.uuid4().hex, offered))
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


_feeders: dict[int, tuple[Runtime, Feeder]] = {}
_feeders_lock = threading.Lock()


def feeder(rt: Runtime, on_done: Callable[[list[Pair]], None]) -> Feeder:
    """This runtime's feeder, started on first use (and again if it stopped)."""
    with _feeders_lock:
        held = _feeders.get(id(rt))
        if held is not None and held[0] is rt and held[1].alive:
            return held[1]
        started = Feeder(rt, on_done).start()
        _feeders[id(rt)] = (rt, started)
        return started


def drain(rt: Runtime, grace: float) -> None:
    """At process end: let this runtime's feeder finish or put back what it holds."""
    with _feeders_lock:
        held = _feeders.pop(id(rt), None)
    if held is not None and held[0] is rt:
        held[1].stop(grace)
