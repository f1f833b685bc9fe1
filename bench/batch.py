"""A 2,000-study folder batch (mock backend): the batch process's memory stays bounded.

``serve`` runs on the embedded default (or ``--redis`` for Redis + PostgreSQL with two
GPU-queue workers); ``cxr-gateway batch run FOLDER --chunk 100`` feeds it 2,000 small chest CRs
spread over a folder tree.  The batch process's resident memory is sampled twice a
second; a bounded process holds the same memory after the last study as after the
first few hundred, however many studies the archive has.

Ends with ``RESULT batch_rss_growth=<peak RSS in the second half of feeding / peak RSS in
the first half> batch_studies_per_s=<studies / s>`` (target: growth <= 1.2; the same peak
for 2,000 and 4,000 studies).
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from pydicom.uid import generate_uid

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.dicom_factory import make_cr  # noqa: E402
from tests.peers import BIN, RedisServer, Serve, Worker, fresh_database  # noqa: E402


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def make_tree(root: Path, n: int) -> None:
    for i in range(n):
        folder = root / f"{i // 250:02d}" / f"{i // 25 % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        make_cr(generate_uid(), size=64, seed=i).save_as(folder / f"{i:05d}.dcm",
                                                         enforce_file_format=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--studies", type=int, default=2000)
    p.add_argument("--chunk", type=int, default=100)
    p.add_argument("--redis", action="store_true", help="Redis + PostgreSQL, 2 GPU workers")
    args = p.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="cxr-batch-bench-"))
    print(f"making {args.studies} studies in {root} ...", flush=True)
    make_tree(root / "archive", args.studies)
    env = {"CXR_STUDY_QUIET_SECONDS": "0.5", "CXR_POLL_SECONDS": "0.2", "CXR_MIN_FREE_MB": "0",
           "CXR_GPU_BATCH_SIZE": "16"}
    extras: list[Worker] = []
    redis = drop = None
    if args.redis:
        redis = RedisServer(root).start()
        url, drop = fresh_database()
        env.update(CXR_BROKER_URL=redis.url, CXR_DATABASE_URL=url)
    srv = Serve(root / "gateway", env)
    srv.start(*(["--worker-queues", "cpu"] if args.redis else []))
    if args.redis:
        extras = [Worker(srv.env, root / "workers.log", "", queues="gpu") for _ in range(2)]
    samples: list[tuple[float, int]] = []
    start = time.monotonic()
    proc = subprocess.Popen([str(BIN / "cxr-gateway"), "batch", "run", str(root / "archive"),
                             "--name", "bench", "--chunk", str(args.chunk), "--no-progress",
                             "--data-dir", str(srv.data_dir)], env=srv.env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def sample() -> None:
        while proc.poll() is None:
            samples.append((time.monotonic() - start, rss_kib(proc.pid)))
            time.sleep(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output, _ = proc.communicate(timeout=7200)
    took = time.monotonic() - start
    sampler.join(timeout=5)
    for w in extras:
        w.stop()
    srv.stop()
    if redis is not None:
        redis.stop()
    if drop is not None:
        drop()
    print(output[-1500:])
    if proc.returncode != 0 or not samples:
        print("RESULT batch_failed=1")
        return 1
    with (srv.data_dir / "batches" / "bench" / "predictions.csv").open() as fh:
        states: dict[str, int] = {}
        for row in csv.DictReader(fh):
            states[row["state"]] = states.get(row["state"], 0) + 1
    quarter = max(1, len(samples) // 4)
    first = max(r for _, r in samples[:quarter])
    last = max(r for _, r in samples[-quarter:])
    peak = max(r for _, r in samples)
    print(f"{args.studies} studies in {took:.0f} s ({args.studies / took:.2f} studies/s); "
          f"predictions: {states}")
    deciles = [max(r for _, r in samples[i * len(samples) // 10:
                                         max(i * len(samples) // 10 + 1,
                                             (i + 1) * len(samples) // 10)])
               for i in range(10)]
    print("batch process RSS by tenth of the run (MiB): "
          + " ".join(f"{d / 1024:.0f}" for d in deciles))
    print(f"batch process RSS: peak {peak / 1024:.0f} MiB; first quarter peak "
          f"{first / 1024:.0f} MiB, last quarter peak {last / 1024:.0f} MiB")
    # growth while studies are fed: the second half of the run against the first (the last
    # tenth, writing the predictions from the database in pages, is reported apart)
    growth = max(deciles[5:9]) / max(deciles[1:5])
    print(f"writing the predictions: peak {deciles[9] / 1024:.0f} MiB")
    print(f"RESULT batch_rss_growth={growth:.2f} "
          f"batch_studies_per_s={args.studies / took:.2f}")
    if not os.environ.get("KEEP"):
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
