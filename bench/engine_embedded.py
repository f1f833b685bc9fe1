"""The embedded default kept full, driven as a user drives it: ``serve`` + ``batch run``.

``cxr-gateway serve`` runs alone on the embedded default with ``CXR_MODEL_BACKEND=openai``
and ``CXR_OPENAI_URL`` pointing at the vLLM stand-in (its own process: C = 256 sequences,
L seconds each, ``--scheduling-policy priority`` as the README says to start vLLM); nothing
else is set.  Then, each step timed against the stand-in's own record:

1. ``idle``: one live study sent by dcmtk ``storescu``; seconds until its job is done (its SR
   written): the baseline for the live ratios below.
2. ``batch``: ``cxr-gateway batch run`` of N small chest CRs (default 300, default chunk).
   Busy = the engine's mean occupancy (running / C, sampled from its ``/metrics``) from its
   first request until the batch's last study started (the span in which studies were
   always waiting to start, so an idle slot is the gateway's doing); also from the moment
   it was first full (kept full), and overall.  A live
   study is sent once the engine is full; its seconds over the idle ones is ``live ratio``.
3. ``queued``: a second batch of M studies (default 2,000); once half of them wait for the
   engine (converted, behind a full engine), a live study is sent; again its seconds over
   the idle ones.

Ends with ``RESULT embedded_busy=<busy> embedded_live_ratio=<step 2> queued_live_ratio=<step
3>`` (targets: busy >= 0.9, both ratios <= 2).  About 4 + 2 x L minutes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from pydicom.uid import generate_uid

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from sqlalchemy import create_engine, text  # noqa: E402

from bench.batch import make_tree  # noqa: E402
from models.vllm_metrics import parse_load  # noqa: E402
from tests.dicom_factory import make_cr  # noqa: E402
from tests.peers import BIN, Serve  # noqa: E402
from tests.vllm_standin import start_subprocess  # noqa: E402

CAPACITY = 256
DATABASE_FILE = "gateway.db"


class Occupancy:
    """The engine's running count, sampled from its /metrics twice a second."""

    def __init__(self, url: str) -> None:
        self.url, self.samples = url, []  # (time.time(), running, waiting)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with httpx.Client(timeout=5) as client:
            while not self._stop.wait(0.5):
                load = parse_load(client.get(f"{self.url}/metrics").text)
                if load is not None:
                    self.samples.append((time.time(), load.running, load.waiting))

    def mean(self, start: float, end: float) -> float:
        inside = [r for t, r, _ in self.samples if start <= t <= end]
        return sum(inside) / len(inside) / CAPACITY if inside else 0.0

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def job_state(db_url: str, study_uid: str) -> str | None:
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT state FROM jobs WHERE study_instance_uid = :u "
                                     "ORDER BY version DESC LIMIT 1"), {"u": study_uid}
                                ).scalar()
    finally:
        engine.dispose()


def waiting_jobs(db_url: str) -> int:
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM jobs WHERE state IN "
                                         "('queued', 'preparing', 'prepared')")).scalar() or 0)
    finally:
        engine.dispose()


def live_study(srv: Serve, root: Path, db_url: str, label: str) -> float:
    """Send one live study with dcmtk's storescu; seconds until its job is done."""
    uid = generate_uid()
    path = root / f"live-{label}.dcm"
    make_cr(uid, size=64, seed=hash(label) % 1000).save_as(path, enforce_file_format=True)
    start = time.monotonic()
    srv.storescu(path, calling="LIVESCU")
    while job_state(db_url, uid) != "done":
        if time.monotonic() - start > 3600:
            raise RuntimeError(f"{label}: the live study has no SR after an hour")
        time.sleep(0.2)
    took = time.monotonic() - start
    print(f"  live study ({label}): SR after {took:.1f} s", flush=True)
    return took


def batch(srv: Serve, folder: Path, name: str) -> subprocess.Popen[str]:
    return subprocess.Popen([str(BIN / "cxr-gateway"), "batch", "run", str(folder),
                             "--name", name, "--no-progress", "--data-dir",
                             str(srv.data_dir)], env=srv.env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--latency", type=float, default=30.0, help="L: seconds per sequence")
    p.add_argument("--studies", type=int, default=300, help="N: the batch")
    p.add_argument("--queued", type=int, default=2000, help="M: the second batch")
    p.add_argument("--fcfs", action="store_true", help="the stand-in without priorities")
    args = p.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="cxr-embedded-bench-"))
    make_tree(root / "batch", args.studies)
    make_tree(root / "queued", args.queued)
    policy = "fcfs" if args.fcfs else "priority"
    standin = start_subprocess("--capacity", str(CAPACITY), "--latency", str(args.latency),
                               "--scheduling-policy", policy)
    srv = Serve(root / "gateway", {"CXR_MODEL_BACKEND": "openai",
                                   "CXR_OPENAI_URL": standin.url})
    for helper_default in ("CXR_STUDY_QUIET_SECONDS", "CXR_POLL_SECONDS"):
        srv.env.pop(helper_default, None)  # nothing set: the user's defaults
    db_url = f"sqlite:///{srv.data_dir / DATABASE_FILE}"
    occupancy = Occupancy(standin.url)
    print(f"stand-in: C = {CAPACITY}, L = {args.latency:g} s, {policy}; serve on the "
          f"embedded default, nothing else set", flush=True)
    try:
        srv.start()
        idle = live_study(srv, root, db_url, "idle engine")
        first = batch(srv, root / "batch", "bench")
        while occupancy.samples[-1][1] < CAPACITY * 0.95 and first.poll() is None:
            time.sleep(0.5)
        during = live_study(srv, root, db_url, f"during a {args.studies}-study batch")
        first.communicate(timeout=7200)
        findings = [r for r in standin.requests if r.turn == "findings"
                    and r.received >= occupancy.samples[0][0]]
        batch_turns = [r for r in findings if r.priority > 0]
        start = min(r.received for r in batch_turns)
        last_start = max(r.started or r.received for r in batch_turns)
        busy = occupancy.mean(start, last_start)
        full = next((t for t, r, _ in occupancy.samples if t >= start and r >= CAPACITY),
                    last_start)
        kept = occupancy.mean(full, last_start)
        overall = occupancy.mean(start, max(r.finished or 0 for r in standin.requests))
        peak = max(r for _, r, _ in occupancy.samples)
        print(f"  batch of {args.studies}: engine busy {busy:.2f} from its first request "
              f"until the last study started ({last_start - start:.0f} s; filling it took "
              f"{full - start:.0f} s, as fast as serve prepared studies), {kept:.2f} once "
              f"full, {overall:.2f} overall; peak {peak:.0f} of {CAPACITY}; batch run "
              f"exit {first.returncode}", flush=True)
        second = batch(srv, root / "queued", "queued")
        while waiting_jobs(db_url) < args.queued // 2 and second.poll() is None:
            time.sleep(1)  # a backlog of converted studies behind a full engine
        queued = live_study(srv, root, db_url, f"{args.queued} batch studies queued")
        second.kill()
        second.communicate()
    finally:
        occupancy.stop()
        srv.stop()
        standin.stop()
    print(f"live ratio during the batch {during / idle:.2f}, with {args.queued} queued "
          f"{queued / idle:.2f} (idle {idle:.1f} s)")
    print(f"RESULT embedded_busy={busy:.2f} embedded_kept_full={kept:.2f} "
          f"embedded_live_ratio={during / idle:.2f} "
          f"queued_live_ratio={queued / idle:.2f}")
    if not os.environ.get("KEEP"):
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
