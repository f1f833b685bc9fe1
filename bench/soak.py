"""Soak: studies through Redis + PostgreSQL while processes die, and nothing is lost.

A gateway (``serve --worker-queues cpu``: listener, assembler, reconciler, prepare and
report) and two GPU-queue workers (the mock backend with latency, or with ``--backend
openai`` the vLLM stand-in ``tests/vllm_standin.py`` as a separate server process whose
every request takes ``--latency`` seconds) run on a private Redis
(no persistence, so a restart loses every queued message) and a fresh PostgreSQL
database; dcmtk storescp is the PACS and keeps every delivery in its own file.  A sender
pushes the studies with dcmtk storescu, ten to an association, and like a PACS resends
whatever was not acknowledged.  Meanwhile a chaos thread, each time only once the victim
really holds work, SIGKILLs GPU workers and the gateway, SIGTERMs the gateway while it
delivers (and times its exit), and restarts Redis once.

It reports studies sent, acknowledged, SRs delivered, lost (an acknowledged study with no
SR; target 0), duplicated (a study with two different SRs; target 0), redeliveries of
the same SR (harmless: the PACS overwrites the same UID), the longest time a killed
process's job waited before another process took it, and the longest SIGTERM exit, and
ends with ``RESULT soak_lost=<n> soak_duplicates=<n> soak_studies=<n>``.  On the
stand-in it also counts the requests by turn, how many were being generated when a GPU
worker was killed, and the studies whose conversation never completed (target 0).

``--backlog N`` instead sends N studies first to a single slow GPU worker with no chaos:
every job waits far longer than the liveness timeout and must still finish unfailed.

    .venv/bin/python bench/soak.py                 # 1,000 studies with chaos
    .venv/bin/python bench/soak.py --studies 50 --worker-kills 2 --gateway-kills 1 --sigterms 2 \
        --latency 0.2 --rate 2
    .venv/bin/python bench/soak.py --backlog 2000
    .venv/bin/python bench/soak.py --backend openai --studies 200 --latency 0.5
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.uid import generate_uid
from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.dicom_factory import make_cr, save  # noqa: E402
from tests.peers import (  # noqa: E402
    BIN,
    RedisServer,
    StoreSCP,
    backend_env,
    dicom_tool,
    free_port,
    fresh_database,
    wait_for_port,
)
from tests.vllm_standin import StandinProcess, start_subprocess  # noqa: E402
from worker.store.db import Database, Job, JobEvent  # noqa: E402


@dataclass
class Proc:
    """A gateway or worker process that the chaos may kill and restart."""

    args: list[str]
    env: dict[str, str]
    log: Path
    kind: str
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Proc:
        with self.log.open("ab") as fh:
            self.proc = subprocess.Popen([str(BIN / "cxr-gateway"), *self.args], env=self.env,
                                         stdout=fh, stderr=subprocess.STDOUT)
        return self

    @property
    def name(self) -> str:
        assert self.proc is not None
        import socket

        return f"{self.kind}-{self.proc.pid}@{socket.gethostname()}"

    def signal(self, sig: int) -> float:
        """Send ``sig`` and wait for the exit; return how long that took."""
        assert self.proc is not None
        start = time.monotonic()
        self.proc.send_signal(sig)
        self.proc.wait(timeout=120)
        return time.monotonic() - start

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@dataclass
class Kill:
    what: str
    victim: str
    at: float  # wall clock (time.time), comparable with job events
    held: list[int]
    exit_seconds: float | None = None
    in_flight: int | None = None  # stand-in requests being generated when the signal went
    exit_code: int | None = None
    orphaned: list[int] = field(default_factory=list)  # still the victim's once it was dead


@dataclass
class Soak:
    root: Path
    db: Database
    gateway: Proc
    gpu: list[Proc]
    redis: RedisServer
    port: int
    standin: StandinProcess | None = None
    kills: list[Kill] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # planned events whose victim held nothing
    chaos_error: str | None = None  # why the chaos plan broke off, if it did
    acked: set[Path] = field(default_factory=set)
    stop: threading.Event = field(default_factory=threading.Event)

    # -- sending, as a PACS does: resend what was not acknowledged ---------------------
    def send(self, files: list[Path], per_association: int = 10, deadline: float = 1e9,
             rate: float = 0.0) -> None:
        """``rate`` > 0: at most that many studies a second, so work stays in flight."""
        pending = list(files)
        while pending and time.monotonic() < deadline:
            if rate > 0:
                time.sleep(per_association / rate)
            batch, pending = pending[:per_association], pending[per_association:]
            out = subprocess.run([dicom_tool("storescu"), "-aet", "SOAKSCU", "-aec",
                                  "CXRGATEWAY", "-v", "127.0.0.1", str(self.port),
                                  *map(str, batch)], capture_output=True, text=True,
                                 timeout=300)
            current = None
            for line in out.stderr.splitlines():
                if "Sending file:" in line:
                    current = Path(line.split("Sending file:", 1)[1].strip())
                elif "Received Store Response (Success)" in line and current is not None:
                    self.acked.add(current)
                    current = None
            missed = [f for f in batch if f not in self.acked]
            if missed:
                pending.extend(missed)
                time.sleep(0.5)  # the gateway may be restarting

    # -- chaos, only when the victim really holds work ---------------------------------
    def held_by(self, name: str) -> list[int]:
        with self.db.session() as s:
            return list(s.scalars(select(Job.id).where(Job.holder == name)))

    def wait_holding(self, p: Proc, state: str | None = None, timeout: float = 45) -> list[int]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.stop.is_set():
            with self.db.session() as s:
                query = select(Job.id).where(Job.holder == p.name)
                if state:
                    query = query.where(Job.state == state)
                held = list(s.scalars(query))
            if held:
                return held
            time.sleep(0.05)
        return []

    def generating(self) -> int | None:
        """Requests the stand-in is generating now (None on the mock)."""
        if self.standin is None:
            return None
        return sum(1 for r in self.standin.requests if r.started and r.finished is None)

    def wait_generating(self, p: Proc, timeout: float = 20) -> list[int]:
        """A GPU worker holding inferring jobs while the stand-in generates a request."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.stop.is_set():
            held = self.wait_holding(p, "inferring", timeout=deadline - time.monotonic())
            if held and self.generating():
                return held
            time.sleep(0.02)
        return []

    def busy_gpu_worker(self, rng: random.Random, timeout: float = 60) -> Proc | None:
        """A GPU worker that holds inferring work now (and, on the stand-in, while a request
        is being generated). Picking one worker up front and waiting on it alone can miss:
        the other worker may be taking every job at that moment."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.stop.is_set():
            for p in rng.sample(self.gpu, len(self.gpu)):
                if self.wait_holding(p, "inferring", timeout=0.01) and (
                        self.standin is None or self.generating()):
                    return p
            time.sleep(0.02)
        return None

    def kill(self, p: Proc | None, what: str, sig: int, state: str | None = None) -> None:
        held = ((self.wait_generating(p) if self.standin is not None and p in self.gpu
                 else self.wait_holding(p, state)) if p is not None else [])
        if p is None or not held:
            self.skipped.append(what)  # reported: the test says which event never found work
            return
        victim = p.name
        in_flight = self.generating()
        at = time.time()
        took = p.signal(sig)
        # what the dead process still holds: only those need a takeover (between the look
        # at ``held`` and the signal the victim may have moved some on itself, and an
        # event's time is taken before its commit, so no clock can tell them apart)
        orphaned = self.held_by(victim)
        self.kills.append(Kill(what, victim, at, held, took if sig == signal.SIGTERM else None,
                               in_flight, p.proc.returncode if p.proc else None,
                               orphaned))
        time.sleep(1.0)
        p.start()
        if p is self.gateway:
            wait_for_port(self.port, timeout=300)  # a busy machine starts serve slowly

    def chaos(self, *args: Any) -> None:
        """The chaos plan (``plan_events``); an error in it is kept for the summary, so a
        run whose plan broke off says so instead of looking calm."""
        try:
            self.plan_events(*args)
        except Exception as exc:  # noqa: BLE001 - reported in the summary and the test
            self.chaos_error = f"{type(exc).__name__}: {exc}"

    def plan_events(self, worker_kills: int, gateway_kills: int, sigterms: int,
                    redis_restart: bool, studies: int, rng: random.Random) -> None:
        """Spread the events over the run: event k fires once k/(events+1) of the studies
        are acknowledged, so that work is flowing when it does."""
        plan = (["worker"] * worker_kills + ["gateway"] * gateway_kills
                + ["sigterm"] * sigterms + (["redis"] if redis_restart else []))
        rng.shuffle(plan)
        for k, event in enumerate(plan, start=1):
            while len(self.acked) < k * studies / (len(plan) + 1):
                if self.stop.wait(0.1):
                    return
            if event == "worker":
                self.kill(self.busy_gpu_worker(rng), "SIGKILL gpu worker", signal.SIGKILL)
            elif event == "gateway":
                self.kill(self.gateway, "SIGKILL gateway", signal.SIGKILL)
            elif event == "sigterm":
                self.kill(self.gateway, "SIGTERM gateway while delivering", signal.SIGTERM,
                          state="delivering")
            else:
                self.redis.kill()
                self.kills.append(Kill("restart redis", "redis", time.time(), []))
                time.sleep(1.0)
                self.redis.start()

    # -- the verdict -------------------------------------------------------------------
    def takeover_waits(self) -> tuple[list[float], int, int]:
        """For each job a killed process still held when it was dead: seconds until
        another process moved it on; how many such jobs never moved on; and how many of
        the jobs seen held before the signal the victim let go of itself: moved on between
        the look and the signal (a delivery can finish in that gap, more so on a busy
        machine), or finished or handed back by a SIGTERM's clean stop. Those were never
        orphaned, so they are neither."""
        waits, missing = [], 0
        with self.db.session() as s:
            for k in self.kills:
                for job_id in k.orphaned:
                    nxt = s.scalar(select(func.min(JobEvent.at)).where(
                        JobEvent.job_id == job_id, JobEvent.at > k.at))
                    if nxt is not None:
                        waits.append(nxt - k.at)
                    else:
                        missing += 1
        let_go = sum(len(set(k.held) - set(k.orphaned)) for k in self.kills)
        return waits, missing, let_go


def longest_queue_wait(db: Database) -> float | None:
    """The longest a job waited for a GPU worker (prepared -> inferring), in seconds."""
    with db.session() as s:
        rows = s.execute(select(JobEvent.job_id, JobEvent.state, JobEvent.at).where(
            JobEvent.state.in_(("prepared", "inferring")))).all()
    ready: dict[int, float] = {}
    longest = None
    for job_id, state, at in sorted(rows, key=lambda r: r[2]):
        if state == "prepared":
            ready[job_id] = at
        elif job_id in ready:
            wait = at - ready.pop(job_id)
            longest = wait if longest is None else max(longest, wait)
    return longest


def wait_finished(db: Database, n_jobs: int, timeout: float) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    states: dict[str, int] = {}
    while time.monotonic() < deadline:
        with db.session() as s:
            states = dict(Counter(s.scalars(select(Job.state)).all()))
        if sum(states.values()) >= n_jobs and set(states) <= {"done", "failed", "superseded"}:
            break
        time.sleep(1.0)
    return states


def delivered(pacs: StoreSCP) -> dict[str, list[str]]:
    """Study UID -> the SR SOP Instance UID of every delivery (one file per delivery)."""
    out: dict[str, list[str]] = {}
    for path in pacs.files():
        ds = dcmread(path, stop_before_pixels=True)
        out.setdefault(str(ds.StudyInstanceUID), []).append(str(ds.SOPInstanceUID))
    return out


def model_env(args: argparse.Namespace) -> tuple[dict[str, str], StandinProcess | None]:
    """The GPU workers' backend: the mock sleeping, or a stand-in vLLM server process."""
    if args.backend == "mock":
        return {**backend_env("mock"), "CXR_MOCK_LATENCY_SECONDS": str(args.latency)}, None
    standin = start_subprocess("--latency", str(args.latency))
    return backend_env("openai", standin_url=standin.url), standin


def conversations(standin: StandinProcess | None, acknowledged: int) -> dict[str, object]:
    """What the stand-in was asked: requests by turn and status, how many studies' images
    got a whole conversation (findings, then the report turn answered)."""
    if standin is None:
        return {}
    records = standin.requests
    by_turn = Counter(f"{r.turn} {r.status}" for r in records)
    completed = {r.image_sha256 for r in records if r.turn == "report" and r.status == 200}
    return {"model_requests": dict(by_turn), "conversations_completed": len(completed),
            "conversations_missing": max(0, acknowledged - len(completed))}


def run(args: argparse.Namespace) -> dict[str, object]:
    rng = random.Random(args.seed)
    root = Path(tempfile.mkdtemp(prefix="cxr-soak-"))
    redis = RedisServer(root).start()
    db_url, drop = fresh_database()
    pacs = StoreSCP(root)
    port = free_port()
    backend, standin = model_env(args)
    env = {**os.environ, "CXR_BROKER_URL": redis.url, "CXR_DATABASE_URL": db_url,
           "CXR_DESTINATIONS": pacs.destination, **backend, "CXR_DATA_DIR": str(root / "gw"),
           "CXR_PORT": str(port), "CXR_STUDY_QUIET_SECONDS": "0.5", "CXR_POLL_SECONDS": "0.2",
           "CXR_LIVENESS_TIMEOUT_SECONDS": str(args.liveness), "CXR_HEARTBEAT_SECONDS": "1",
           "CXR_REQUEUE_SECONDS": "5", "CXR_RETRY_BACKOFF_SECONDS": "1",
           "CXR_RETRY_MAX_BACKOFF_SECONDS": "5", "CXR_GPU_BATCH_WAIT_SECONDS": "0.1",
           "CXR_MIN_FREE_MB": "0", "CXR_API_PORT": "0"}
    gateway = Proc(["serve", "--worker-queues", "cpu"], env, root / "gateway.log", "serve")
    n_gpu = 1 if args.backlog else 2
    gpu = [Proc(["worker", "--queues", "gpu"], env, root / f"gpu{i}.log", "worker")
           for i in range(n_gpu)]
    soak = Soak(root, Database(db_url), gateway, gpu, redis, port, standin)
    studies = args.backlog or args.studies
    folder = root / "studies"
    folder.mkdir()
    files = [save(make_cr(generate_uid(), size=64, seed=i), folder / f"{i:05d}.dcm")
             for i in range(studies)]
    start = time.monotonic()
    try:
        gateway.start()
        wait_for_port(port, timeout=60)
        for p in gpu:
            p.start()
        chaos = threading.Thread(target=soak.chaos, daemon=True, args=(
            0 if args.backlog else args.worker_kills, 0 if args.backlog else args.gateway_kills,
            0 if args.backlog else args.sigterms, not args.backlog and not args.no_redis_restart,
            studies, rng))
        chaos.start()
        soak.send(files, deadline=time.monotonic() + args.timeout, rate=args.rate)
        sent_done = time.monotonic()
        chaos.join(timeout=args.timeout)  # the rest of the plan (its last events)
        if chaos.is_alive() and soak.chaos_error is None:
            soak.chaos_error = "the chaos plan had not finished when the studies had"
        states = wait_finished(soak.db, len(soak.acked), args.timeout)
        elapsed = time.monotonic() - start
        time.sleep(2)  # a last delivery in flight lands
        by_study = delivered(pacs)
    finally:
        soak.stop.set()
        for p in [gateway, *gpu]:
            p.stop()
        pacs.stop()
        redis.stop()
        try:
            model = conversations(standin, len(soak.acked))  # one study per file sent
        finally:
            if standin is not None:
                standin.stop()
    acked_studies = {str(dcmread(f, stop_before_pixels=True).StudyInstanceUID)
                     for f in soak.acked}
    lost = sorted(u for u in acked_studies if u not in by_study)
    duplicated = sorted(u for u, uids in by_study.items() if len(set(uids)) > 1)
    redeliveries = sum(len(uids) - len(set(uids)) for uids in by_study.values())
    waits, never_taken_over, let_go = soak.takeover_waits()
    queue_wait = longest_queue_wait(soak.db)
    with soak.db.session() as s:
        failed = [(j.id, j.reason) for j in s.scalars(select(Job).where(Job.state == "failed"))]
        attempts = Counter(s.scalars(select(Job.attempts)).all())
    drop()
    if not args.keep:
        import shutil

        shutil.rmtree(root, ignore_errors=True)
    return {
        "mode": f"backlog of {studies}, one slow GPU worker" if args.backlog else "chaos",
        "backend": args.backend, **model,
        "studies_sent": studies, "acknowledged": len(acked_studies),
        "srs_delivered": sum(len(set(u)) for u in by_study.values()),
        "lost": len(lost), "lost_studies": lost[:10], "duplicated": len(duplicated),
        "redeliveries_same_uid": redeliveries, "failed_jobs": failed[:10],
        "failed": len(failed), "job_states": states, "takeover_attempts": dict(attempts),
        "events": [f"{k.what} ({k.victim}, {len(k.held)} job(s) held)"
                   + (f", {k.in_flight} request(s) being generated"
                      if k.in_flight is not None and "gpu" in k.what else "")
                   + (f", exited in {k.exit_seconds:.2f} s" if k.exit_seconds else "")
                   for k in soak.kills],
        "events_skipped": soak.skipped, "chaos_error": soak.chaos_error,
        "longest_takeover_wait_s": round(max(waits), 2) if waits else None,
        "takeovers": len(waits), "takeovers_missing": never_taken_over,
        "let_go_by_victim": let_go,
        "sigterm_exit_codes": [k.exit_code for k in soak.kills if k.exit_seconds is not None],
        "longest_wait_for_gpu_s": round(queue_wait, 1) if queue_wait is not None else None,
        "liveness_timeout_s": args.liveness,
        "longest_sigterm_exit_s": round(max((k.exit_seconds or 0) for k in soak.kills), 2)
        if any(k.exit_seconds for k in soak.kills) else None,
        "sending_s": round(sent_done - start, 1), "total_s": round(elapsed, 1),
        "studies_per_s": round(len(acked_studies) / elapsed, 2), "scratch": str(root),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--studies", type=int, default=1000)
    p.add_argument("--worker-kills", type=int, default=6)
    p.add_argument("--gateway-kills", type=int, default=3)
    p.add_argument("--sigterms", type=int, default=3)
    p.add_argument("--no-redis-restart", action="store_true")
    p.add_argument("--backend", choices=("mock", "openai"), default="mock",
                   help="GPU workers' backend: the mock, or openai on the vLLM stand-in")
    p.add_argument("--latency", type=float, default=0.05,
                   help="seconds per generation (the mock's, or each stand-in request's)")
    p.add_argument("--liveness", type=float, default=10.0, help="liveness timeout (s)")
    p.add_argument("--backlog", type=int, default=0,
                   help="instead: N studies queued for one slow GPU worker, no chaos")
    p.add_argument("--rate", type=float, default=0.0,
                   help="send at most this many studies a second (0: as fast as possible)")
    p.add_argument("--timeout", type=float, default=3600.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", help="also write the summary here")
    p.add_argument("--keep", action="store_true", help="keep the scratch folder (logs, files)")
    args = p.parse_args(argv)
    summary = run(args)
    for key, value in summary.items():
        print(f"{key}: {value}")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    if args.backlog:
        print(f"RESULT backlog_failed={summary['failed']} backlog_studies={args.backlog} "
              f"backlog_lost={summary['lost']}")
    else:
        print(f"RESULT soak_lost={summary['lost']} soak_duplicates={summary['duplicated']} "
              f"soak_studies={summary['studies_sent']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
