"""What 1,024 studies in flight cost a GPU worker: memory over its idle footprint, threads.

A real ``cxr-gateway worker --queues gpu`` process (Redis broker of its own, SQLite) with
the ``openai`` backend, nothing else set, against the vLLM stand-in (its own process, C =
1,024 sequences held L = 60 s each, so that every study sent stays in flight).  N prepared
jobs (default 1,100) wait, each with a model input the size a real chest radiograph
converts to (RG1 through the gateway's conversion, about 190 KB).  The worker's resident
memory and thread count are read from ``/proc`` once it says it consumes (idle), then
while the engine fills, until it holds 1,024 sequences and for 5 s after.

Ends with ``RESULT engine_inflight_mib=<peak RSS - idle RSS> engine_inflight_threads=<most
threads> engine_inflight_peak=<sequences at once>`` (targets: < 200 MiB, a few threads).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.peers import BIN, RedisServer  # noqa: E402
from tests.prepared import make_prepared, realistic_inputs  # noqa: E402
from tests.vllm_standin import start_subprocess  # noqa: E402
from worker.runtime import configure  # noqa: E402
from worker.settings import load_settings  # noqa: E402

CAPACITY = 1024


def proc_status(pid: int) -> tuple[float, int]:
    """(resident MiB, threads) of a process."""
    rss, threads = 0.0, 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
        elif line.startswith("Threads:"):
            threads = int(line.split()[1])
    return rss, threads


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--studies", type=int, default=1100)
    p.add_argument("--latency", type=float, default=60.0)
    args = p.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="cxr-engine-memory-"))
    standin = start_subprocess("--capacity", str(CAPACITY), "--latency", str(args.latency))
    redis = RedisServer(root).start()
    env = {**os.environ, "CXR_DATA_DIR": str(root / "data"), "CXR_BROKER_URL": redis.url,
           "CXR_MODEL_BACKEND": "openai", "CXR_OPENAI_URL": standin.url}
    settings = load_settings(None, {}, data_dir=root / "data", broker_url=redis.url,
                             model_backend="openai", openai_url=standin.url)
    rt = configure(settings)  # the schema, as serve makes it
    make_prepared(rt.db, args.studies, priority=9, images=realistic_inputs(64))
    log = (root / "worker.log").open("wb")
    worker = subprocess.Popen([str(BIN / "cxr-gateway"), "worker", "--queues", "gpu"],
                              env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        while b"consuming" not in (root / "worker.log").read_bytes():
            if worker.poll() is not None:
                raise RuntimeError((root / "worker.log").read_text()[-2000:])
            time.sleep(0.2)
        time.sleep(2)
        idle_rss, idle_threads = proc_status(worker.pid)
        from worker.pipeline import tasks
        from worker.pipeline.celery_app import configure_celery

        configure_celery(settings)
        tasks.enqueue_infer(1, 1)  # the wake-up a prepared study's message gives
        peak_rss, peak_threads, full_at = idle_rss, idle_threads, None
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            rss, threads = proc_status(worker.pid)
            peak_rss, peak_threads = max(peak_rss, rss), max(peak_threads, threads)
            running = int(standin.state()["running"])
            if running >= CAPACITY and full_at is None:
                full_at = time.monotonic()
            if full_at is not None and time.monotonic() - full_at > 5:
                break
            time.sleep(0.25)
        engine_peak = standin.peak_concurrency
    finally:
        worker.kill()
        worker.wait()
        log.close()
        standin.stop()
        redis.stop()
    print(f"worker idle: {idle_rss:.0f} MiB, {idle_threads} threads; with {engine_peak} "
          f"in flight: {peak_rss:.0f} MiB ({peak_rss - idle_rss:+.0f} MiB), at most "
          f"{peak_threads} threads")
    print(f"RESULT engine_inflight_mib={peak_rss - idle_rss:.0f} "
          f"engine_inflight_threads={peak_threads} engine_inflight_peak={engine_peak}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
