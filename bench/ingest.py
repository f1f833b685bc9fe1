"""Ingest throughput: our listener (full durability and bookkeeping) against dcmtk storescp.

Same machine, same run, same sender (dcmtk storescu, one association per data set):

* large: 40 copies of RG1_UNCR.dcm (7.2 MB each) with unique SOP Instance UIDs;
* small: 500 small CR instances (64x64, 12 bits).

Our listener runs as ``cxr-gateway serve`` on the embedded default (spool fsync + rename
+ directory fsync + SQLite WAL commit with synchronous=FULL before every 0x0000); the
study quiet period is set long so no job competes with ingest during the measurement.
storescp runs with its defaults (writes each file, no fsync).  Each target is measured
``--rounds`` times, alternating, and the best round counts.

Two network settings are measured, because dcmtk as packaged leaves Nagle's algorithm on:
``stock`` (dcmtk's defaults: every small instance waits out a ~40 ms delayed ACK) and
``nodelay`` (``TCP_NODELAY=1`` for storescu and storescp, which shows processing cost).
The RESULT line uses ``nodelay``, the stricter comparison.

Ends with ``RESULT ingest_large_ratio=<ours/storescp> ingest_small_ratio=<ours/storescp>``
(throughput ratios; target large >= 2.0, small >= 1.0).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.dicom_factory import make_cr, save  # noqa: E402
from tests.peers import free_port, wait_for_port  # noqa: E402


def make_sets(root: Path) -> dict[str, Path]:
    large, small = root / "large", root / "small"
    large.mkdir()
    small.mkdir()
    rg1 = dcmread(get_testdata_file("RG1_UNCR.dcm"))
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
    return {"large": large, "small": small}


MODES = {"stock": {}, "nodelay": {"TCP_NODELAY": "1"}}


def send(folder: Path, port: int, called: str, mode: str) -> float:
    start = time.perf_counter()
    out = subprocess.run(["storescu", "-aec", called, "+sd", "-xe", "127.0.0.1", str(port),
                          str(folder)], capture_output=True, text=True,
                         env={**os.environ, **MODES[mode]})
    elapsed = time.perf_counter() - start
    if out.returncode != 0:
        raise RuntimeError(f"storescu failed: {out.stderr[-1000:]}")
    return elapsed


class Target:
    def __init__(self, name: str, root: Path) -> None:
        self.name, self.root = name, root
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, mode: str) -> None:
        out = self.root / f"{self.name}-{time.monotonic_ns()}"
        out.mkdir()
        if self.name == "storescp":
            cmd = ["storescp", "--output-directory", str(out), "-aet", "STORESCP",
                   str(self.port)]
            env = {**os.environ, **MODES[mode]}
        else:
            cmd = [str(Path(sys.executable).parent / "cxr-gateway"), "serve"]
            env = {**os.environ, "CXR_DATA_DIR": str(out), "CXR_PORT": str(self.port),
                   "CXR_STUDY_QUIET_SECONDS": "3600", "CXR_MIN_FREE_MB": "0", "CXR_API_PORT": "0"}
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_for_port(self.port)
        self.out = out

    def stop(self) -> None:
        assert self.proc is not None
        self.proc.terminate()
        self.proc.wait(timeout=30)
        shutil.rmtree(self.out, ignore_errors=True)

    @property
    def called(self) -> str:
        return "STORESCP" if self.name == "storescp" else "CXRGATEWAY"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    if shutil.which("storescu") is None or shutil.which("storescp") is None:
        print("dcmtk is not installed (scripts/bootstrap installs it)")
        return 2
    with tempfile.TemporaryDirectory(prefix="cxr-ingest-bench-") as tmp:
        root = Path(tmp)
        sets = make_sets(root)
        sizes = {k: sum(p.stat().st_size for p in v.iterdir()) for k, v in sets.items()}
        counts = {k: len(list(v.iterdir())) for k, v in sets.items()}
        best: dict[tuple[str, str, str], float] = {}
        for _ in range(args.rounds):
            for mode in MODES:
                for name in ("storescp", "ours"):
                    target = Target(name, root)
                    target.start(mode)
                    try:
                        for kind, folder in sets.items():
                            t = send(folder, target.port, target.called, mode)
                            key = (mode, name, kind)
                            best[key] = min(best.get(key, float("inf")), t)
                    finally:
                        target.stop()
        ratios = {}
        for mode in MODES:
            for kind in sets:
                print(f"[{mode}] {kind}: {counts[kind]} instances, {sizes[kind] / 1e6:.1f} MB, "
                      f"one association, best of {args.rounds}")
                for name in ("storescp", "ours"):
                    t = best[(mode, name, kind)]
                    print(f"  {name:<9} {t:7.2f} s  {sizes[kind] / 1e6 / t:8.1f} MB/s  "
                          f"{counts[kind] / t:8.1f} instances/s")
                ratio = best[(mode, "storescp", kind)] / best[(mode, "ours", kind)]
                print(f"  ours/storescp throughput: {ratio:.2f}")
                if mode == "nodelay":
                    ratios[kind] = ratio
        print(f"RESULT ingest_large_ratio={ratios['large']:.2f} "
              f"ingest_small_ratio={ratios['small']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
