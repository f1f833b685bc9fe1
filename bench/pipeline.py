"""Queue overhead: 200 studies through the whole gateway against a bare loop, same run.

* ``redis+pg``: ``serve --worker-queues cpu`` plus one more ``cxr-gateway worker --queues
  cpu`` on the gateway node and two ``cxr-gateway worker --queues gpu`` processes, on a
  private Redis and a fresh PostgreSQL database;
* ``embedded``: ``serve`` alone (SQLite, embedded broker, in-process worker);
* ``bare loop``: one Python loop per study, no queue and no database: write the file
  (fsync), convert it, run the mock backend, build the SR, C-STORE it.

Every variant uses the mock backend and sends SRs to the same dcmtk storescp.  The
gateway variants receive all studies over one dcmtk storescu association (quiet period
0.2 s) and are timed from the first send to the last SR stored; ack-to-SR latency is the
time from an instance's database record to its job's ``done``, both in the burst (a
backlog of 200) and for 10 studies sent one at a time afterwards (quiet period included).

Ends with ``RESULT queue_overhead_ratio=<best gateway time / bare loop time>``
(target <= 1.5; p50 ack-to-SR target < 1 s).
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from pydicom import Dataset, dcmread
from pydicom.uid import generate_uid
from sqlalchemy import select

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from dicom_gateway.documents.sr import SRIdentity, build_sr  # noqa: E402
from dicom_gateway.imaging.conversion import convert_file  # noqa: E402
from dicom_gateway.transfer.destinations import Destination  # noqa: E402
from dicom_gateway.transfer.sender import send_datasets  # noqa: E402
from dicom_gateway.uids import derived_uid  # noqa: E402
from models.mock import MockBackend  # noqa: E402
from models.study import run_studies  # noqa: E402
from tests.dicom_factory import make_cr, save  # noqa: E402
from tests.peers import RedisServer, Serve, StoreSCP, Worker, fresh_database  # noqa: E402
from worker.pipeline.stages import draft_from_result, result_payload  # noqa: E402
from worker.store.db import Database, Instance, Job, JobEvent  # noqa: E402

GATEWAY_ENV = {"CXR_STUDY_QUIET_SECONDS": "0.2", "CXR_POLL_SECONDS": "0.1",
               "CXR_MIN_FREE_MB": "0", "CXR_GPU_BATCH_WAIT_SECONDS": "0"}


def make_studies(folder: Path, n: int) -> list[Path]:
    folder.mkdir()
    return [save(make_cr(generate_uid(), size=256, seed=i), folder / f"{i:03d}.dcm")
            for i in range(n)]


def wait_done(db: Database, n: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with db.session() as s:
            states = s.scalars(select(Job.state)).all()
        if len(states) >= n and all(st in ("done", "failed") for st in states):
            if any(st == "failed" for st in states):
                raise RuntimeError("a job failed")
            return
        time.sleep(0.05)
    raise TimeoutError("gateway did not finish")


def latencies(db: Database) -> list[float]:
    out = []
    with db.session() as s:
        for job in s.scalars(select(Job)).all():
            received = s.scalar(select(Instance.received_at).where(
                Instance.sop_instance_uid == job.sop_instance_uid))
            done = s.scalar(select(JobEvent.at).where(JobEvent.job_id == job.id,
                                                      JobEvent.state == "done"))
            if received is not None and done is not None:
                out.append(done - received)
    return out


def run_gateway(kind: str, files: list[Path], trickle: list[Path], root: Path
                ) -> tuple[float, list[float], list[float]]:
    scp = StoreSCP(root / f"{kind}-dest")
    redis = None
    drop = None
    workers: list[Worker] = []
    env = dict(GATEWAY_ENV, CXR_DESTINATIONS=scp.destination)
    if kind == "redis+pg":
        redis = RedisServer(root).start()
        db_url, drop = fresh_database()
        env.update(CXR_BROKER_URL=redis.url, CXR_DATABASE_URL=db_url)
    srv = Serve(root / f"{kind}-gateway", env)
    try:
        if redis is not None:
            srv.start("--worker-queues", "cpu")
            workers = [Worker(srv.env, root / "workers.log", f"gpu{i}", queues="gpu")
                       for i in range(2)]
            # a second cpu worker on the gateway node (it shares the spool and outbox)
            workers.append(Worker(srv.env, root / "workers.log", "cpu1", queues="cpu"))
        else:
            srv.start()
        db = Database(env.get("CXR_DATABASE_URL")
                      or f"sqlite:///{srv.data_dir / 'gateway.db'}")
        time.sleep(2)  # workers connected
        start = time.perf_counter()
        out = srv.storescu(*files)
        if out.returncode != 0:
            raise RuntimeError(out.stderr[-1000:])
        wait_done(db, len(files), timeout=600)
        scp.wait_files(len(files), timeout=120)
        elapsed = time.perf_counter() - start
        burst = latencies(db)
        # one study at a time, as a quiet PACS sends them: latency without a backlog
        for n, path in enumerate(trickle, start=len(files) + 1):
            srv.storescu(path)
            wait_done(db, n, timeout=60)
        single = sorted(set(latencies(db)) - set(burst))
        return elapsed, burst, single
    finally:
        for w in workers:
            w.stop()
        srv.stop()
        scp.stop()
        if redis is not None:
            redis.stop()
        if drop is not None:
            drop()


def run_bare_loop(files: list[Path], root: Path) -> float:
    scp = StoreSCP(root / "bare-dest")
    spool = root / "bare-spool"
    spool.mkdir()
    backend = MockBackend()
    dest = Destination(scp.ae_title, "127.0.0.1", scp.port)
    try:
        start = time.perf_counter()
        for path in files:
            data = path.read_bytes()
            target = spool / path.name
            with target.open("wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            image = convert_file(target)
            result = run_studies(backend, [image.png])[0]
            draft = draft_from_result(result_payload(backend, result), image.conversion)
            source = dcmread(io.BytesIO(data), stop_before_pixels=True)
            sr: Dataset = build_sr(source, draft, _identity(source))
            outcome = send_datasets([sr], dest, "BARELOOP")
            if not outcome.ok:
                raise RuntimeError(outcome.detail)
        elapsed = time.perf_counter() - start
        scp.wait_files(len(files), timeout=60)
        return elapsed
    finally:
        scp.stop()


def _identity(source: Dataset) -> SRIdentity:
    return SRIdentity(derived_uid("bare", source.StudyInstanceUID), derived_uid(
        "bare-sr", source.StudyInstanceUID), 1, "bare loop", "0", "bench", derived_uid("d"))


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--studies", type=int, default=200)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="cxr-pipeline-bench-") as tmp:
        root = Path(tmp)
        files = make_studies(root / "in", args.studies)
        trickle = make_studies(root / "trickle", 10)
        bare = run_bare_loop(files, root)
        print(f"{args.studies} studies (mock backend, SR to dcmtk storescp)")
        print(f"  bare loop   {bare:7.2f} s  {args.studies / bare:6.1f} studies/s")
        best = float("inf")
        for kind in ("embedded", "redis+pg"):
            elapsed, lat, single = run_gateway(kind, files, trickle, root)
            best = min(best, elapsed)
            print(f"  {kind:<10}  {elapsed:7.2f} s  {args.studies / elapsed:6.1f} studies/s  "
                  f"({elapsed / bare:.2f}x bare); ack-to-SR in the burst p50 "
                  f"{statistics.median(lat):.2f} s p95 {pct(lat, 0.95):.2f} s; one study at a "
                  f"time p50 {statistics.median(single):.2f} s p95 {pct(single, 0.95):.2f} s")
        print(f"RESULT queue_overhead_ratio={best / bare:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
