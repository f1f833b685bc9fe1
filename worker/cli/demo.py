"""``cxr-gateway demo``: the whole path on one machine, with real DICOM associations.

It starts the gateway on the embedded default (SQLite, embedded broker, in-process
worker, mock backend unless told otherwise), a small receiving SCP standing in for
the PACS, sends the real chest radiograph RG1 from pydicom-data, waits for the SR and
prints the job's timeline.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from worker.cli.common import load
from worker.settings import Settings

if TYPE_CHECKING:
    from worker.cli.common import Commands
    from worker.service import ServeProcess
    from worker.store.db import Job

# The DICOM stack and the gateway are imported when the demo runs, not when the parser
# is built: every other command would load them too.

DEMO_PACS_AE = "DEMOPACS"


def register(commands: Commands) -> None:
    parser = commands.add_parser("demo", help="send RG1 through the whole path and print "
                                 "the result")
    parser.add_argument("--data-dir", help="keep the demo's data here (default: a temp "
                        "folder)")
    parser.add_argument("--backend", help="model backend (default mock)")
    parser.add_argument("--allow-cpu", action="store_true",
                        help="with --backend local: allow slow CPU inference")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="seconds to wait for the SR (default 120)")
    parser.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    settings = load(args)
    if args.allow_cpu:
        settings = settings.replace(allow_cpu=True)
    return run_demo(settings, Path(args.data_dir) if args.data_dir else None, args.timeout)


def rg1_path() -> Path:
    from pydicom.data import get_testdata_file

    path = get_testdata_file("RG1_UNCR.dcm")
    if not path:
        raise SystemExit("error: RG1_UNCR.dcm not found; install the pydicom-data package")
    return Path(str(path))


def wait_for_job(gateway: ServeProcess, study_uid: str, timeout: float) -> Job | None:
    from sqlalchemy import select

    from worker.store import jobs
    from worker.store.db import Job

    assert gateway.rt is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with gateway.rt.db.session() as s:
            job = s.scalar(select(Job).where(Job.study_instance_uid == study_uid)
                           .order_by(Job.version.desc()))
            if job is not None and job.state in jobs.TERMINAL:
                return job
        time.sleep(0.1)
    return None


def run_demo(settings: Settings, data_dir: Path | None, timeout: float = 120.0) -> int:
    from pydicom import dcmread

    from dicom_gateway.listen.listener import StorageListener
    from dicom_gateway.spool import DurableFolder
    from dicom_gateway.transfer.destinations import Destination
    from dicom_gateway.transfer.sender import send_datasets
    from worker.service import ServeProcess

    root = data_dir or Path(tempfile.mkdtemp(prefix="cxr-demo-"))
    pacs = StorageListener(DEMO_PACS_AE, "127.0.0.1", 0, DurableFolder(root / "demo-pacs"),
                           sink=lambda _r: None)
    pacs.start()
    settings = settings.replace(
        data_dir=root / "gateway", port=0, host="127.0.0.1", api_port=0,
        destinations=(Destination(DEMO_PACS_AE, "127.0.0.1", pacs.port),),
        study_quiet_seconds=min(settings.study_quiet_seconds, 1.0), poll_seconds=0.2,
    )
    gateway = ServeProcess(settings)
    gateway.start()
    try:
        source = dcmread(rg1_path())
        print(f"sending RG1_UNCR.dcm (study {source.StudyInstanceUID}) to "
              f"{settings.ae_title}@127.0.0.1:{gateway.port}")
        sent = send_datasets([source], Destination(settings.ae_title, "127.0.0.1", gateway.port),
                             "DEMO_SCU")
        if not sent.ok:
            print(f"error: the gateway did not store the image: {sent.detail}")
            return 1
        job = wait_for_job(gateway, str(source.StudyInstanceUID), timeout)
        if job is None:
            print(f"error: no finished job within {timeout:.0f} s")
            return 1
        return print_summary(gateway, job, root)
    finally:
        gateway.stop()
        pacs.stop()


def print_summary(gateway: ServeProcess, job: Job, root: Path) -> int:
    from worker.store import jobs

    assert gateway.rt is not None
    with gateway.rt.db.session() as s:
        summary = jobs.job_summary(s, job)
    print(f"job {summary['job_id']} (study {summary['study_instance_uid']}, "
          f"version {summary['version']}): {summary['state']}"
          + (f" - {summary['reason']}" if summary["reason"] else ""))
    labels = ", ".join(summary["labels"]) or "(none)"  # type: ignore[arg-type]
    if summary["backend"] == "mock":
        labels += "  (MOCK backend: no model read the image; nothing is asserted)"
    print(f"  backend: {summary['backend']}  result: {summary['status']}  labels: {labels}")
    if summary["status"] == "mock":
        print("  run the real model with --backend local on a GPU worker with the weights")
    print("  timeline:")
    for stage in summary["timeline"]:  # type: ignore[attr-defined]
        secs = stage["seconds"]
        shown = f"{secs:9.3f} s" if secs is not None else "        -  "
        print(f"    {stage['state']:<11} {shown}  {stage['detail']}")
    print(f"  SR: {summary['sr_path']}")
    for d in summary["deliveries"]:  # type: ignore[attr-defined]
        print(f"  delivered to {d['destination']}: {d['state']} ({d['detail']})")
    data = gateway.settings.data_dir
    print(f"  data: {data}  (cxr-gateway jobs show {summary['job_id']} --data-dir {data})")
    return 0 if summary["state"] == jobs.DONE else 1
