"""Strangers at the HTTP service: what a 1 GiB body with no token and 200 dripping clients
cost ``serve``, and how a reviewer's request fares meanwhile.  Same run, same serve.

* memory: the serve process tree's resident memory (``bench/hostile.py``'s sampler), its
  peak over the level before, while one client streams a 1 GiB JSON body with no token
  (Content-Length declared; the service answers 413 before reading it, so the client's
  send stops there) and 200 clients, each from its own loopback address (127.0.1.x),
  drip one byte of a request head a second;
* a reviewer: the median time of ``GET /api/overview`` with a token, idle (the baseline)
  and while the strangers are connected.

Target (issue 31): less than 20 MiB growth, and the reviewer answered as usual.  Ends with
``RESULT growth_mib=<x> reviewer_busy_over_idle=<x> refused=<status>``.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from hostile import peak_growth  # noqa: E402

from tests.peers import Serve  # noqa: E402

MIB = 2**20


def reviewer_seconds(srv: Serve, token: str, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        req = urllib.request.Request(f"http://127.0.0.1:{srv.api_port}/api/overview",
                                     headers={"Authorization": f"Bearer {token}"})
        t = time.perf_counter()
        with urllib.request.urlopen(req, timeout=120) as resp:
            resp.read()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def huge_body(srv: Serve, result: list[int]) -> None:
    sock = socket.create_connection(("127.0.0.1", srv.api_port), timeout=120)
    sock.sendall(b"POST /api/jobs/1/questions HTTP/1.1\r\nHost: x\r\n"
                 b"Content-Type: application/json\r\nContent-Length: 1073741824\r\n\r\n")
    chunk = b"[" * MIB
    try:
        for _ in range(1024):
            sock.sendall(chunk)
    except (BrokenPipeError, ConnectionResetError):
        pass  # refused and closed: the rest is never sent
    try:
        head = sock.recv(4096)
        result.append(int(head.split()[1]) if head else 0)
    except (ConnectionResetError, TimeoutError, IndexError, ValueError):
        result.append(0)
    sock.close()


def drip(srv: Serve, n: int, seconds: float, stop: threading.Event) -> None:
    try:
        sock = socket.create_connection(("127.0.0.1", srv.api_port), timeout=30,
                                        source_address=(f"127.0.1.{n}", 0))
    except OSError:
        return
    with sock:
        for byte in b"GET /api/overview HTTP/1.1\r\nHost: x\r\n"[:int(seconds)]:
            if stop.is_set():
                return
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                return  # closed by the service: its head was too slow
            stop.wait(1.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--drip-seconds", type=float, default=20.0)
    ap.add_argument("--rounds", type=int, default=9)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="cxr-http-bench-") as tmp:
        srv = Serve(Path(tmp) / "gateway", {"CXR_MODEL_BACKEND": "mock"}).start()
        try:
            token = (srv.data_dir / "api-token").read_text().strip()
            idle = reviewer_seconds(srv, token, args.rounds)
            assert srv.proc is not None
            growth: list[int] = []
            status: list[int] = []
            stop = threading.Event()
            with peak_growth(srv.proc.pid, growth):
                drippers = [threading.Thread(target=drip, args=(srv, 1 + n % 250,
                                                                args.drip_seconds, stop))
                            for n in range(args.clients)]
                for t in drippers:
                    t.start()
                body = threading.Thread(target=huge_body, args=(srv, status))
                body.start()
                time.sleep(2.0)  # every stranger connected
                busy = reviewer_seconds(srv, token, args.rounds)
                body.join(timeout=300)
                stop.set()
                for t in drippers:
                    t.join(timeout=60)
        finally:
            srv.stop()
    grown = growth[0] / MIB if growth else float("nan")
    print(f"1 GiB body, no token: answered {status[0] if status else 'nothing'}")
    print(f"{args.clients} dripping clients, 1 byte/s for up to {args.drip_seconds:.0f} s")
    print(f"serve tree growth at peak   {grown:8.1f} MiB  (target < 20)")
    print(f"reviewer GET /api/overview  idle {idle * 1000:7.1f} ms, with strangers "
          f"{busy * 1000:7.1f} ms  ({busy / idle:.2f}x), median of {args.rounds}")
    print(f"RESULT growth_mib={grown:.1f} reviewer_busy_over_idle={busy / idle:.2f} "
          f"refused={status[0] if status else 0}")


if __name__ == "__main__":
    main()
