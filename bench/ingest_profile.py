"""Where one instance's time goes, on the listener's real path (docs/performance.md).

Runs the gateway's own ``StorageListener`` in this process, with the real spool and the
real recorder on SQLite (WAL, synchronous=FULL) as ``serve`` uses them, and sends it the
500 small instances of ``bench/ingest.py`` from dcmtk ``storescu`` over one association.
Timestamps taken at the socket (pynetdicom's ``AssociationSocket.recv``/``send``) and
around each step of the C-STORE handler split every instance's round trip into:

* network in: from the last byte of the request read to the handler starting (PDU
  decode, DIMSE message assembly, the hand-over between pynetdicom's two threads);
* the handler's steps: header parse, pixel check, spool (file fsync, rename, folder
  fsync), database (statements and the commit);
* network out: from the handler's return to the response written (response encode,
  the hand-over back to the DUL thread);
* the peer: from our response to our next read (storescu's own work, and the DUL
  thread noticing the next request).

Prints the median of each, in milliseconds and as a share of the round trip.  Not a
pass/fail benchmark: the ratios live in ``bench/ingest.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import pynetdicom.transport as transport  # noqa: E402
from pydicom.uid import generate_uid  # noqa: E402

import dicom_gateway.listen.store_checks as checks_module  # noqa: E402
import dicom_gateway.spool as spool_module  # noqa: E402
from dicom_gateway.listen.listener import ListenerLimits, StorageListener  # noqa: E402
from dicom_gateway.spool import DurableFolder  # noqa: E402
from tests.dicom_factory import make_cr, save  # noqa: E402
from tests.peers import free_port  # noqa: E402
from worker.ingest.sink import InstanceRecorder  # noqa: E402
from worker.store.db import Database  # noqa: E402

MAX_PDU = 131072


class Clock:
    """Per-instance step durations and socket timestamps, in order."""

    def __init__(self) -> None:
        self.marks: list[tuple[str, float]] = []
        self.steps: dict[str, list[float]] = defaultdict(list)

    def mark(self, name: str) -> None:
        self.marks.append((name, time.perf_counter()))

    def timed(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.steps[name].append(time.perf_counter() - start)
        return wrapper


@contextlib.contextmanager
def instrumented(clock: Clock) -> Iterator[None]:
    saved = (transport.AssociationSocket.recv, transport.AssociationSocket.send,
             checks_module.dcmread, checks_module.pixel_data_problem,
             spool_module._fsync_dir)
    recv, send = saved[0], saved[1]

    def timed_recv(self: Any, n: int) -> bytearray:
        data = recv(self, n)
        clock.mark("recv")
        return data

    def timed_send(self: Any, data: bytes) -> None:
        clock.mark("send")
        send(self, data)

    transport.AssociationSocket.recv = timed_recv  # type: ignore[method-assign,assignment]
    transport.AssociationSocket.send = timed_send  # type: ignore[method-assign,assignment]
    checks_module.dcmread = clock.timed("header parse", checks_module.dcmread)
    checks_module.pixel_data_problem = clock.timed("pixel check",
                                                   checks_module.pixel_data_problem)
    spool_module._fsync_dir = clock.timed("spool: folder fsync", spool_module._fsync_dir)
    try:
        yield
    finally:
        (transport.AssociationSocket.recv, transport.AssociationSocket.send,  # type: ignore[method-assign]
         checks_module.dcmread, checks_module.pixel_data_problem,
         spool_module._fsync_dir) = saved


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--instances", type=int, default=500)
    ap.add_argument("--senders", type=int, default=1,
                    help="storescu processes at once (then only rate and commits are shown)")
    args = ap.parse_args(argv)
    if not Path("/usr/bin/storescu").exists():
        print("dcmtk is not installed (scripts/bootstrap installs it)")
        return 2
    with tempfile.TemporaryDirectory(prefix="cxr-ingest-profile-") as tmp:
        root = Path(tmp)
        (root / "in").mkdir()
        study = generate_uid()
        files = [save(make_cr(study, view="LL" if i else "PA", number=i + 1, seed=i),
                      root / "in" / f"{i:03d}.dcm") for i in range(args.instances)]
        spool = DurableFolder(root / "spool")
        tempfile.tempdir = str(spool.tmp)  # as serve does: received files land in .tmp
        db = Database(f"sqlite:///{root / 'gateway.db'}")
        db.migrate()
        clock = Clock()
        recorder = InstanceRecorder(db)
        port = free_port()
        scp = StorageListener("CXRGATEWAY", "127.0.0.1", port, spool,
                              clock.timed("database", recorder),
                              limits=ListenerLimits(max_pdu_size=MAX_PDU))
        spool.adopt = clock.timed("spool", spool.adopt)  # type: ignore[method-assign]
        inner = scp.handle_store

        def handler(event: Any) -> int:
            clock.mark("handler start")
            try:
                return inner(event)
            finally:
                clock.mark("handler end")

        scp.handle_store = handler  # type: ignore[method-assign]
        with instrumented(clock):
            scp.start()
            try:
                start = time.perf_counter()
                senders = [subprocess.Popen(
                    ["/usr/bin/storescu", "-aec", "CXRGATEWAY", "-xe", "--max-pdu",
                     str(MAX_PDU), "127.0.0.1", str(port), *map(str, files[k::args.senders])],
                    env={**os.environ, "TCP_NODELAY": "1"}, stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL) for k in range(args.senders)]
                if any(p.wait() for p in senders):
                    raise RuntimeError("storescu failed")
                elapsed = time.perf_counter() - start
            finally:
                scp.stop()
        if args.senders > 1:
            print(f"{args.instances} instances from {args.senders} senders at once: "
                  f"{elapsed:.2f} s, {args.instances / elapsed:.0f} instances/s; "
                  f"{recorder.commits} database commits")
            return 0
        segments = split(clock.marks)
        steps = clock.steps
        order = ("header parse", "pixel check", "spool", "spool: folder fsync", "database")
        rows: list[tuple[str, float]] = [("network in", statistics.median(segments["in"]))]
        for name in order:
            label = "    of which folder fsync" if name == "spool: folder fsync" \
                else f"  {name}"
            rows.append((label, statistics.median(steps[name])))
        inside = sum(statistics.median(steps[k]) for k in order if k != "spool: folder fsync")
        rows.append(("  rest of the handler",
                     max(0.0, statistics.median(segments["handler"]) - inside)))
        rows += [("network out", statistics.median(segments["out"])),
                 ("peer, until our next read", statistics.median(segments["peer"]))]
        total = sum(statistics.median(segments[k]) for k in ("in", "handler", "out", "peer"))
        print(f"{args.instances} instances over one association: {elapsed:.2f} s, "
              f"{args.instances / elapsed:.0f} instances/s; median round trip "
              f"{total * 1e3:.2f} ms")
        for name, seconds in rows:
            print(f"  {name:<30} {seconds * 1e3:6.3f} ms  {seconds / total * 100:5.1f} %")
        print(f"  database commits: {recorder.commits} for {args.instances} instances")
    return 0


def split(marks: list[tuple[str, float]]) -> dict[str, list[float]]:
    """Per instance: last recv -> handler start -> handler end -> send -> next recv."""
    out: dict[str, list[float]] = defaultdict(list)
    last_recv = start = end = sent = None
    for name, t in marks:
        if name == "recv":
            if sent is not None:
                out["peer"].append(t - sent)
                sent = None
            last_recv = t
        elif name == "handler start" and last_recv is not None:
            out["in"].append(t - last_recv)
            start = t
        elif name == "handler end" and start is not None:
            out["handler"].append(t - start)
            end, start = t, None
        elif name == "send" and end is not None:
            out["out"].append(t - end)
            sent, end = t, None
    return out


if __name__ == "__main__":
    raise SystemExit(main())
