"""Ingest throughput: our listener against Orthanc (and dcmtk storescp, the ceiling).

Same machine, same run, the same sender (dcmtk storescu, TCP_NODELAY=1 on every side),
the same files, every receiver with the same maximum PDU (131072, dcmtk's largest):

* large: 40 x RG1_UNCR.dcm (7.2 MB each), one association;
* small: 500 small CR instances (64 x 64, 12 bits, about 8 KB), one association;
* concurrent: the 500 small instances from 4 storescu processes at once (125 each);
* large_concurrent: the 40 RG1 from 4 storescu processes at once (10 each), as a PACS
  pushing a backlog over several associations does.

A set that sends files an earlier set sent goes to a freshly started receiver.

Receivers:

* ours: ``cxr-gateway serve`` on the embedded default: every instance written to the spool,
  fsynced (file and folder) and committed to SQLite (WAL, synchronous=FULL) before its
  0x0000; the study quiet period is an hour so that no job competes with ingest; its
  listener processes as the settings' default has them (``CXR_LISTENER_PROCESSES=auto``,
  one per usable core) unless ``--listener-processes`` says otherwise;
* Orthanc (Debian package): its default storage (files synced, ``SyncStorageArea``) and
  SQLite index;
* storescp: writes each file, no sync, no index (the ceiling).

Rounds alternate between receivers; each set's median over the rounds counts.  After
every run the bench checks that the receiver really stored every instance (its files,
and for ours the database rows; for Orthanc its instance count) before it reports.

Ends with ``RESULT ingest_large_vs_orthanc=<x> ingest_small_vs_orthanc=<x>
ingest_concurrent_vs_orthanc=<x> ingest_large_concurrent_vs_orthanc=<x>`` (throughput
ratios, ours over Orthanc's; targets >= 1.0, and the large one no lower than 1.4).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.dicom_factory import make_cr, save  # noqa: E402
from tests.peers import free_port, wait_for_port  # noqa: E402
from worker.settings import usable_cores  # noqa: E402

MAX_PDU = 131072
NODELAY = {"TCP_NODELAY": "1"}
SENDERS = 4
CONCURRENT = {"concurrent", "large_concurrent"}  # sent by SENDERS storescu at once


def make_sets(root: Path) -> dict[str, list[Path]]:
    large, small = root / "large", root / "small"
    large.mkdir()
    small.mkdir()
    rg1 = dcmread(str(get_testdata_file("RG1_UNCR.dcm")))
    study = generate_uid()
    for i in range(40):
        rg1.SOPInstanceUID = generate_uid()
        rg1.file_meta.MediaStorageSOPInstanceUID = rg1.SOPInstanceUID
        rg1.StudyInstanceUID = study
        rg1.save_as(large / f"{i:03d}.dcm", enforce_file_format=True)
    study = generate_uid()
    for i in range(500):
        save(make_cr(study, view="LL" if i else "PA", number=i + 1, seed=i),
             small / f"{i:03d}.dcm")
    return {"large": sorted(large.iterdir()), "small": sorted(small.iterdir()),
            "concurrent": sorted(small.iterdir()), "large_concurrent": sorted(large.iterdir())}


def storescu(files: list[Path], port: int, called: str) -> subprocess.Popen[str]:
    # the files as an argument list, in chunks storescu accepts
    return subprocess.Popen(["/usr/bin/storescu", "-aec", called, "-xe", "--max-pdu",
                             str(MAX_PDU), "127.0.0.1", str(port), *map(str, files)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **NODELAY})


def send(files: list[Path], port: int, called: str, senders: int) -> float:
    parts = [files[i::senders] for i in range(senders)]
    start = time.perf_counter()
    procs = [storescu(p, port, called) for p in parts]
    errors = [p.communicate()[1] for p in procs]
    elapsed = time.perf_counter() - start
    for p, err in zip(procs, errors, strict=True):
        if p.returncode != 0:
            raise RuntimeError(f"storescu failed: {err[-800:]}")
    return elapsed


class Receiver:
    name, called = "", ""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.out = root

    def start(self) -> None:
        raise NotImplementedError

    def stored(self) -> int:
        raise NotImplementedError

    def stop(self) -> None:
        assert self.proc is not None
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.out, ignore_errors=True)


class Ours(Receiver):
    name, called = "ours", "CXRGATEWAY"
    processes: int | None = None  # None: the setting's default

    def start(self) -> None:
        self.out = self.root / f"ours-{time.monotonic_ns()}"
        env = {k: v for k, v in os.environ.items() if k != "CXR_LISTENER_PROCESSES"}
        env.update({**NODELAY, "CXR_DATA_DIR": str(self.out),
                    "CXR_PORT": str(self.port), "CXR_STUDY_QUIET_SECONDS": "3600",
                    "CXR_MIN_FREE_MB": "0", "CXR_API_PORT": "0",
                    "CXR_MAX_PDU_SIZE": str(MAX_PDU), "CXR_MAX_ASSOCIATIONS": "25"})
        if self.processes is not None:
            env["CXR_LISTENER_PROCESSES"] = str(self.processes)
        self.log = self.root / f"{self.out.name}.log"  # kept after stop, for a failure
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen([str(Path(sys.executable).parent / "cxr-gateway"),
                                          "serve"], env=env, stdout=log, stderr=log)
        wait_for_port(self.port, timeout=60)

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def stored(self) -> int:
        files = len(list((self.out / "spool").rglob("*.dcm")))
        with sqlite3.connect(self.out / "gateway.db") as db:
            rows = db.execute("SELECT count(*) FROM instances").fetchone()[0]
        return min(files, int(rows))


class Orthanc(Receiver):
    name, called = "orthanc", "ORTHANC"

    def start(self) -> None:
        self.out = self.root / f"orthanc-{time.monotonic_ns()}"
        self.out.mkdir()
        self.http = free_port()
        config = {"Name": "bench", "StorageDirectory": str(self.out / "db"),
                  "IndexDirectory": str(self.out / "db"), "HttpPort": self.http,
                  "DicomPort": self.port, "DicomAet": "ORTHANC", "RemoteAccessAllowed": False,
                  "AuthenticationEnabled": False, "DicomAlwaysAllowStore": True,
                  "MaximumPduLength": MAX_PDU, "HttpProxy": "", "StorageCompression": False}
        (self.out / "orthanc.json").write_text(json.dumps(config))
        self.proc = subprocess.Popen(["Orthanc", str(self.out / "orthanc.json")],
                                     env={**os.environ, **NODELAY},
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, timeout=60)
        wait_for_port(self.http, timeout=60)

    def stored(self) -> int:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http}/statistics",
                                    timeout=30) as r:
            stats = json.loads(r.read())
        db = self.out / "db"  # instance files are two folder levels down; the index is here
        files = sum(1 for p in db.rglob("*") if p.is_file() and p.parent != db)
        self.detail = f"index {stats['CountInstances']}, files {files}"
        return min(int(stats["CountInstances"]), files)


class StoreSCP(Receiver):
    name, called = "storescp", "STORESCP"

    def start(self) -> None:
        self.out = self.root / f"storescp-{time.monotonic_ns()}"
        self.out.mkdir()
        self.proc = subprocess.Popen(["/usr/bin/storescp", "--output-directory",
                                      str(self.out), "-aet", "STORESCP", "--max-pdu",
                                      str(MAX_PDU), str(self.port)],
                                     env={**os.environ, **NODELAY},
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port)

    def stored(self) -> int:
        return len([p for p in self.out.iterdir() if p.is_file()])


def run_set(receiver: Receiver, name: str, files: list[Path], stored_before: int) -> float:
    """Send one set and wait until the receiver really stored it; the seconds it took."""
    senders = SENDERS if name in CONCURRENT else 1
    try:
        elapsed = send(files, receiver.port, receiver.called, senders)
    except RuntimeError:
        print(f"{receiver.name}, {name} set: a sender failed")
        if isinstance(receiver, Ours):
            print(f"{receiver.name}'s log ends:\n{receiver.log_tail()}")
        raise
    total = stored_before + len(files)
    deadline = time.monotonic() + 30
    while receiver.stored() < total and time.monotonic() < deadline:
        time.sleep(0.2)
    got = receiver.stored()
    if got < total:
        raise RuntimeError(f"{receiver.name} stored {got} of {total} "
                           f"{getattr(receiver, 'detail', '')}")
    return elapsed


def one_round(kind: type[Receiver], root: Path, sets: dict[str, list[Path]],
              times: dict[tuple[str, str], list[float]]) -> None:
    """Every set into one receiver, restarted (empty) before a set resends files."""
    receiver = kind(root)
    receiver.start()
    try:
        sent: set[Path] = set()
        stored = 0
        for name, files in sets.items():
            if sent & set(files):
                receiver.stop()
                receiver.start()
                sent, stored = set(), 0
            times.setdefault((receiver.name, name), []).append(
                run_set(receiver, name, files, stored))
            sent |= set(files)
            stored += len(files)
    finally:
        receiver.stop()


def report(sets: dict[str, list[Path]], kinds: Sequence[type[Receiver]], rounds: int,
           times: dict[tuple[str, str], list[float]]) -> None:
    sizes = {k: sum(p.stat().st_size for p in v) for k, v in sets.items()}
    ratios = {}
    for name, files in sets.items():
        how = f", {SENDERS} senders at once" if name in CONCURRENT else ", one association"
        print(f"{name}: {len(files)} instances, {sizes[name] / 1e6:.1f} MB{how}; "
              f"median of {rounds}")
        for kind in kinds:
            t = statistics.median(times[(kind.name, name)])
            print(f"  {kind.name:<9} {t:7.2f} s  {sizes[name] / 1e6 / t:8.1f} MB/s  "
                  f"{len(files) / t:8.1f} instances/s")
        if ("ours", name) in times and ("orthanc", name) in times:
            ratios[name] = statistics.median(times[("orthanc", name)]) / statistics.median(
                times[("ours", name)])
            print(f"  ours/Orthanc throughput: {ratios[name]:.2f}")
    if len(ratios) == len(sets):
        print("RESULT " + " ".join(f"ingest_{name}_vs_orthanc={ratio:.2f}"
                                   for name, ratio in ratios.items()))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--listener-processes", type=int, default=None,
                    help="our listener processes (default: the setting's default, auto = "
                         "one per usable core)")
    ap.add_argument("--only", choices=["ours", "orthanc", "storescp"], action="append")
    args = ap.parse_args(argv)
    Ours.processes = args.listener_processes
    shown = args.listener_processes or f"auto = {usable_cores()}"
    print(f"ours: {shown} listener process(es); {usable_cores()} usable cores")
    for tool in ("/usr/bin/storescu", "/usr/bin/storescp"):
        if not Path(tool).exists():
            print("dcmtk is not installed (scripts/bootstrap installs it)")
            return 2
    kinds = [k for k in (Ours, Orthanc, StoreSCP) if not args.only or k.name in args.only]
    with tempfile.TemporaryDirectory(prefix="cxr-ingest-bench-") as tmp:
        root = Path(tmp)
        sets = make_sets(root)
        times: dict[tuple[str, str], list[float]] = {}
        for _ in range(args.rounds):
            for kind in kinds:  # alternating: one round of each receiver in turn
                one_round(kind, root, sets, times)
        report(sets, kinds, args.rounds, times)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
