"""``cxr-gateway batch run|status|export``: retrospective studies through the pipeline
(see ``worker/research/batch.py``).

``run SOURCE`` lists a DICOM folder, a CSV of PNG/JPEG, a PACS (C-FIND, then C-MOVE or
C-GET) or a DICOMweb server and feeds it to the running gateway; the same ``--name``
resumes a run.  ``status NAME`` shows a run's progress from another terminal; ``export
NAME`` writes its predictions again from the database.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from worker.cli.common import add_data_dir, read_runtime
from worker.cli.errors import CommandError

if TYPE_CHECKING:
    from worker.cli.common import Commands
    from worker.research.batch import Batch, BatchOptions
    from worker.runtime import Runtime


def register(commands: Commands) -> None:
    parser = commands.add_parser(
        "batch", help="retrospective studies through the pipeline: run a DICOM folder, a "
        "CSV of PNG/JPEG, a PACS (C-FIND + C-MOVE/C-GET) or a DICOMweb server; status and "
        "export of a run")
    actions = parser.add_subparsers(dest="batch_action", required=True, metavar="ACTION",
                                    help="run, status or export")
    add_run(actions)
    status = actions.add_parser("status", help="a run's progress (from another terminal)")
    status.add_argument("name", help="the run's name")
    status.add_argument("--json", action="store_true", help="as JSON")
    add_data_dir(status)
    status.set_defaults(func=cmd_status, quiet=True)
    export = actions.add_parser("export", help="write a run's predictions again from the "
                                "database")
    export.add_argument("name", help="the run's name")
    export.add_argument("--out", help="where predictions go (default DATA_DIR/batches/NAME)")
    add_data_dir(export)
    export.set_defaults(func=cmd_export, quiet=True)


def add_run(actions: Commands) -> None:
    run = actions.add_parser("run", help="run (or resume) a named batch from a source")
    run.add_argument("source", metavar="SOURCE",
                     help="a folder, a CSV, 'pacs' (CXR_SOURCE_PACS) or AE@host:port, an "
                          "http(s) DICOMweb root")
    run.add_argument("--name", help="the run's name (default from the source); the same "
                     "name resumes it")
    run.add_argument("--csv", help="images: the CSV naming study id and file")
    run.add_argument("--date-from", help="PACS/DICOMweb: studies from this date (YYYYMMDD)")
    run.add_argument("--date-to", help="PACS/DICOMweb: studies up to this date")
    run.add_argument("--modality", help="PACS/DICOMweb: ModalitiesInStudy, e.g. CR or DX")
    run.add_argument("--accession", action="append", help="PACS/DICOMweb: an accession "
                     "number (repeat the option for several)")
    run.add_argument("--study-uid", action="append", help="PACS/DICOMweb: a Study Instance "
                     "UID (repeat for several)")
    run.add_argument("--retrieve", choices=["move", "get"], default="move",
                     help="PACS: C-MOVE to our listener (default) or C-GET")
    run.add_argument("--send-srs", action="store_true",
                     help="also send each SR to CXR_DESTINATIONS (default: outbox only)")
    run.add_argument("--chunk", type=int, default=100,
                     help="studies read ahead of the model: fetched but not yet converted "
                          "(bounds the spool and the broker; an engine is offered every "
                          "converted study, however many)")
    run.add_argument("--out", help="where predictions go (default DATA_DIR/batches/NAME)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_data_dir(run)
    run.set_defaults(func=cmd_run, quiet=True)


@contextlib.contextmanager
def batch_mistakes() -> Iterator[None]:
    """A batch that cannot run as asked (no such run, another source under the same name,
    an unreadable listing) is the user's one error line, not a traceback."""
    from worker.research.batch import BatchError

    try:
        yield
    except (BatchError, ValueError, OSError) as exc:
        raise CommandError(str(exc)) from None


def cmd_status(args: argparse.Namespace) -> int:
    from worker.research.batch import status_of

    rt = read_runtime(args)
    with batch_mistakes():
        shown = status_of(rt, args.name)
    print(json.dumps(shown, indent=2) if args.json else render_status(shown))
    return 0


def render_status(shown: dict[str, Any]) -> str:
    counts = "  ".join(f"{k} {v}" for k, v in sorted(shown["counts"].items()))
    eta = f"{shown['eta_s']} s" if shown["eta_s"] is not None else "-"
    rate = (f"{shown['rate_per_s']} studies/s over {shown['elapsed_s']} s of processing"
            if shown["rate_per_s"] is not None else "- (nothing finished yet)")
    return (f"batch {shown['name']} ({shown['kind']}, {shown['source']})\n"
            f"  {shown['finished']} of {shown['total']} finished: {counts}\n"
            f"  rate {rate}, ETA {eta}"
            + (f"\n  finished at {shown['finished_at']}" if shown["finished_at"] else ""))


def cmd_export(args: argparse.Namespace) -> int:
    from worker.research.batch import find_run, write_outputs

    rt = read_runtime(args)
    with batch_mistakes():
        run = find_run(rt, args.name)
    out = Path(args.out) if args.out else rt.settings.data_dir / "batches" / run.name
    for path in write_outputs(rt, run, out).values():
        print(path)
    return 0


def options(args: argparse.Namespace) -> BatchOptions:
    """The run this command line asks for; a PACS or DICOMweb source stays as given, a
    file or folder becomes absolute (a resumed run must find it from any directory)."""
    from dicom_gateway.transfer.retrieve import StudyQuery
    from worker.research.batch import BatchOptions, kind_of

    source = args.source
    csv_path = Path(args.csv) if args.csv else None
    kind = kind_of(source, csv_path)
    query = StudyQuery(args.date_from or "", args.date_to or "", args.modality or "",
                       tuple(args.accession or ()), tuple(args.study_uid or ()))
    return BatchOptions(
        name=args.name or f"{kind}-{Path(source.rstrip('/')).name or 'run'}",
        source=source if kind in ("pacs", "dicomweb") else str(Path(source).resolve()),
        kind=kind, csv=csv_path, query=query, retrieve=args.retrieve,
        send_srs=args.send_srs, chunk=args.chunk,
        out_dir=Path(args.out) if args.out else None)


def prepared(rt: Runtime, args: argparse.Namespace) -> tuple[Batch, int]:
    """The run and its number of studies, listed: they are all in the database before
    any is fed."""
    from worker.pipeline import tasks
    from worker.pipeline.celery_app import configure_celery
    from worker.research.batch import Batch

    with batch_mistakes():
        wanted = options(args)
        configure_celery(rt.settings)
        batch = Batch(rt, wanted, tasks.enqueue_infer)
        return batch, batch.scan()


def cmd_run(args: argparse.Namespace) -> int:
    rt = read_runtime(args)
    batch, total = prepared(rt, args)
    name = batch.options.name
    print(f"batch {name}: {total} stud{'y' if total == 1 else 'ies'} from {args.source} "
          f"({batch.options.kind}); results for {batch.key}", flush=True)
    if not drive(batch, total, args.no_progress):
        return 130
    paths = batch.write_outputs()
    counts = batch.counts()
    print(f"batch {name}: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())))
    for path in paths.values():
        print(f"  {path}")
    return 0


def drive(batch: Batch, total: int, no_progress: bool) -> bool:
    """Feed the run to the end with a progress bar; False when stopped by Ctrl-C."""
    from tqdm import tqdm

    bar = tqdm(total=total, unit="study", disable=no_progress, smoothing=0.05)

    def progress(counts: dict[str, int]) -> None:
        finished = sum(counts.get(k, 0) for k in ("done", "skipped", "failed"))
        bar.update(finished - bar.n)
        bar.set_postfix(skipped=counts.get("skipped", 0), failed=counts.get("failed", 0),
                        in_flight=counts.get("fetched", 0), refresh=False)

    try:
        batch.drive(progress)
    except KeyboardInterrupt:
        bar.close()
        print(f"stopped; nothing is lost: run the same command again (--name "
              f"{batch.options.name}) to finish", file=sys.stderr)
        return False
    bar.close()
    return True
