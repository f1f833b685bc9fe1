"""Hostile input, bounded: a deflate bomb's memory cost, and idle connections' lock-out.

Same run, same ``cxr-gateway serve`` (embedded default, one or two listener processes):

* memory: the serve process tree's resident memory (the sum of VmRSS of serve and all its
  descendants, sampled every 50 ms) before and at its peak while one instance is sent:
  a real radiograph (RG1_UNCR.dcm, 7.2 MB, dcmtk storescu) as the baseline, then the
  deflate bomb (about 1 MiB in Deflated Explicit VR Little Endian that inflates to
  1 GiB, sent by a pynetdicom SCU in this process, outside the tree measured), then
  ``--concurrent`` bombs at once.  The status each bomb got is printed.
* lock-out: how long storescu takes to store RG1 with nothing else connected, against
  the same right after 40 TCP connections were opened that never send an
  A-ASSOCIATE-RQ (they stay open until the gateway closes them), alternating, median of
  ``--rounds``.

Target: the bomb grows the tree by less than 200 MiB and is refused; the idle
connections delay a real sender by at most a few seconds.  Ends with
``RESULT bomb_growth_mib=<x> bomb_vs_rg1=<x> idle_delay_s=<x> idle_vs_none=<x>`` for
each process count.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.dicom_factory import raw_c_store  # noqa: E402
from tests.hostile_corpus import HostileCase, deflate_bomb  # noqa: E402
from tests.peers import Serve, child_pids, sample_file  # noqa: E402

MIB = 2**20
IDLE = 40


def tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and every descendant (0 for any that just ended)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
            todo += child_pids(p)
    return total


@contextlib.contextmanager
def peak_growth(pid: int, out: list[int]) -> Iterator[None]:
    """Sample the tree every 50 ms while the block runs (and 1 s after); append the peak
    minus the level before to ``out``."""
    before = statistics.median(tree_rss(pid) for _ in range(5))
    peak = [before]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], tree_rss(pid))
            stop.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield
        time.sleep(1.0)  # what the gateway does after the response counts too
    finally:
        stop.set()
        sampler.join()
        out.append(int(peak[0] - before))


def send_bomb(port: int, bomb: HostileCase) -> str:
    status = raw_c_store(port, bomb.sop_instance_uid, bomb.data, bomb.sop_class_uid,
                         transfer_syntax=bomb.transfer_syntax)
    return "no answer" if status is None else f"0x{status:04X}"


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def store_rg1(srv: Serve, rg1: Path) -> None:
    result = srv.storescu(rg1, extra=("-v",))
    if result.returncode != 0 or "Store Response (Success)" not in result.stderr:
        raise RuntimeError(f"storescu failed:\n{result.stderr}")


def memory(srv: Serve, rg1: Path, bomb: HostileCase, concurrent: int) -> dict[str, float]:
    assert srv.proc is not None
    pid = srv.proc.pid
    store_rg1(srv, rg1)  # warm-up: first association, imports, caches
    rg1_growth: list[int] = []
    with peak_growth(pid, rg1_growth):
        store_rg1(srv, rg1)
    bomb_growth: list[int] = []
    statuses: list[str] = []
    with peak_growth(pid, bomb_growth):
        statuses.append(send_bomb(srv.port, bomb))
    with peak_growth(pid, bomb_growth):
        threads = [threading.Thread(target=lambda: statuses.append(send_bomb(srv.port, bomb)))
                   for _ in range(concurrent)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    print(f"  RG1 (7.2 MB) stored: tree grew {rg1_growth[0] / MIB:.1f} MiB")
    print(f"  bomb ({len(bomb.data) / MIB:.2f} MiB -> 1024 MiB inflated), alone: "
          f"{bomb_growth[0] / MIB:.1f} MiB; {concurrent} at once: "
          f"{bomb_growth[1] / MIB:.1f} MiB; statuses {statuses}")
    worst = max(bomb_growth)
    return {"bomb_growth_mib": worst / MIB,
            "bomb_vs_rg1": worst / max(rg1_growth[0], 1)}


def lockout(srv: Serve, rg1: Path, rounds: int) -> dict[str, float]:
    alone: list[float] = []
    crowded: list[float] = []
    for _ in range(rounds):
        alone.append(timed(lambda: store_rg1(srv, rg1)))
        idle = [socket.create_connection(("127.0.0.1", srv.port)) for _ in range(IDLE)]
        try:
            crowded.append(timed(lambda: store_rg1(srv, rg1)))
        finally:
            for sock in idle:
                sock.close()
    a, c = statistics.median(alone), statistics.median(crowded)
    print(f"  storescu RG1: alone {a:.2f} s, with {IDLE} idle connections open {c:.2f} s "
          f"(medians of {rounds}; all rounds: {[round(x, 2) for x in crowded]})")
    return {"idle_delay_s": c - a, "idle_vs_none": c / a}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--concurrent", type=int, default=4, help="bombs sent at once")
    args = ap.parse_args(argv)
    rg1 = sample_file("RG1_UNCR.dcm")
    print("building the bomb ...")
    bomb = deflate_bomb()
    results: list[str] = []
    for n in args.processes:
        with tempfile.TemporaryDirectory(prefix="cxr-hostile-") as tmp:
            srv = Serve(Path(tmp) / "gateway", {"CXR_LISTENER_PROCESSES": str(n),
                                                "CXR_STUDY_QUIET_SECONDS": "3600"})
            srv.start()
            try:
                print(f"{n} listener process(es):")
                numbers = {**memory(srv, rg1, bomb, args.concurrent),
                           **lockout(srv, rg1, args.rounds)}
            finally:
                srv.stop()
        results.append(f"processes={n} " + " ".join(f"{k}={v:.2f}"
                                                     for k, v in numbers.items()))
    for line in results:
        print("RESULT", line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
