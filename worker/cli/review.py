"""``cxr-gateway review`` and ``reviews export|agreement``: the radiologist's side of
issue 25, from a terminal (the tokens reviewers log in with: ``worker.cli.tokens``).

``review JOB`` records a verdict on one job's 14 labels (a label not named is agreed
with: ``--add Edema --remove Pneumothorax`` is a whole verdict), or with no verdict
option shows the verdicts recorded so far.  ``reviews export`` writes the reviewers'
label sets as a CheXpert-style labels CSV that ``cxr-gateway evaluate`` reads as it is
(with ``--batch NAME``, keyed by the batch's study ids, so its predictions file matches;
``--predictions FILE`` writes the model's predictions of the same studies for studies
that came in live).  The rules live in ``worker/store/reviews.py``; who may be named as
the reviewer, in ``worker/store/callers.py``.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from worker.cli.common import add_data_dir, add_group, add_reader, read_runtime
from worker.cli.errors import CommandError

if TYPE_CHECKING:
    from worker.cli.common import Commands


def register(commands: Commands) -> None:
    """``review JOB`` and ``reviews export|agreement``."""
    _register_review(commands)
    _register_reviews(commands)


def _register_review(commands: Commands) -> None:
    review = commands.add_parser(
        "review", help="record a reviewer's verdict on a job's 14 labels (agree, disagree, "
        "not assessable; a label not named is agreed with), or show the verdicts")
    review.add_argument("job_id", type=int, metavar="JOB", help="the job")
    review.add_argument("--agree", nargs="*", action="extend", metavar="LABEL",
                        help="labels agreed with (every label not named is agreed with)")
    review.add_argument("--disagree", nargs="+", action="extend", default=[],
                        metavar="LABEL", help="labels the model called wrongly either way")
    review.add_argument("--add", nargs="+", action="extend", default=[], metavar="LABEL",
                        help="labels the reviewer sees (e.g. Edema, or pleural_effusion)")
    review.add_argument("--remove", nargs="+", action="extend", default=[], metavar="LABEL",
                        help="labels the reviewer does not see")
    review.add_argument("--not-assessable", nargs="+", action="extend", default=[],
                        metavar="LABEL", help="labels that cannot be judged on this image")
    review.add_argument("--note", help="free text (no patient data)")
    review.add_argument("--reviewer", default="operator",
                        help="the name recorded with the verdict: operator (the default, as "
                             "the operator's token is recorded) or a live token's name")
    review.add_argument("--json", action="store_true", help="as JSON")
    add_data_dir(review)
    review.set_defaults(func=cmd_review, quiet=True)


def _register_reviews(commands: Commands) -> None:
    actions = add_group(commands, "reviews", "the reviewers' verdicts: export a labels CSV "
                        "for 'evaluate', agreement per label", "export or agreement")
    export = add_reader(actions, "export", "a CheXpert-style labels CSV from the reviewers' "
                        "label sets (1, 0, -1 = not assessable)", cmd_export)
    export.add_argument("--batch", help="only this batch run's studies, keyed by its study "
                        "ids (as its predictions file is)")
    export.add_argument("--reviewer", help="only this reviewer's verdicts (default: the "
                        "latest verdict on each study)")
    export.add_argument("-o", "--out", help="the CSV (default DATA_DIR/reviews/labels.csv "
                        "or labels-BATCH.csv; '-' for stdout)")
    export.add_argument("--predictions", help="also write the model's predictions of the "
                        "same studies here (for live studies, which have no batch file)")
    agreement = add_reader(actions, "agreement", "how often reviewers agreed with the model, "
                           "per label, so far", cmd_agreement, json_option=True)
    agreement.add_argument("--batch", help="only this batch run's studies")


def cmd_review(args: argparse.Namespace) -> int:
    from worker.store import callers, reviews
    from worker.store.db import Job

    rt = read_runtime(args)
    asked = args.agree is not None or any((args.disagree, args.add, args.remove,
                                           args.not_assessable, args.note))
    with rt.db.session() as s:
        job = s.get(Job, args.job_id)
        if job is None:
            raise CommandError(f"no job {args.job_id}")
        if not asked:
            shown: Any = reviews.of_job(s, job.id)
            print(json.dumps(shown, indent=2) if args.json else "\n".join(
                map(render_review, shown)) or f"job {job.id}: no verdict yet")
            return 0
        try:
            reviewer = callers.claimed(s, args.reviewer, "--reviewer")
            decided = reviews.decide(reviews.model_labels(job), None, args.add, args.remove,
                                     args.disagree, args.not_assessable, args.agree or ())
        except (reviews.ReviewError, callers.UnknownCaller) as exc:
            raise CommandError(str(exc)) from None
        recorded = reviews.record(s, job, reviewer, decided, args.note or "")
    print(json.dumps(recorded, indent=2) if args.json else render_review(recorded))
    return 0


def render_review(r: dict[str, Any]) -> str:
    """One verdict for people: who, when, what changed, the reviewer's label set."""
    model = set(r["model_labels"])
    changed = ", ".join(f"{c} ({'removed' if c in model else 'added'})"
                        for c in r["changed"]) or "none"
    lines = [f"job {r['job_id']}: verdict {r['review_id']} by {r['reviewer']} at {r['at']}"
             + ("" if r["current"] else " (replaced by a later one)"),
             f"  model     {', '.join(r['model_labels']) or 'no label'}",
             f"  changed   {changed}",
             f"  reviewer  {', '.join(r['labels']) or 'no label'}"]
    if r["not_assessable"]:
        lines.append(f"  not assessable  {', '.join(r['not_assessable'])}")
    if r["note"]:
        lines.append(f"  note      {r['note']}")
    return "\n".join(lines)


def _run_id(rt: Any, name: str | None) -> int | None:
    from worker.research.batch_outputs import BatchError, find_run

    if not name:
        return None
    try:
        return find_run(rt, name).id
    except BatchError as exc:
        raise CommandError(str(exc)) from None


def _write_csv(rows: list[dict[str, Any]], fields: list[str], target: str) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    if target == "-":
        sys.stdout.write(buffer.getvalue())
        return
    path = Path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(buffer.getvalue())


def cmd_export(args: argparse.Namespace) -> int:
    from worker.research.batch_outputs import PREDICTION_FIELDS
    from worker.store import reviews

    rt = read_runtime(args)
    run_id = _run_id(rt, args.batch)
    with rt.db.session() as s:
        rows = reviews.export_rows(s, run_id, args.reviewer)
        predicted = reviews.prediction_rows(s, rows) if args.predictions else []
    if not rows:
        raise CommandError("no verdict recorded yet" + (f" on batch {args.batch}"
                                                        if args.batch else "")
                           + (f" by {args.reviewer}" if args.reviewer else ""))
    out = args.out or str(rt.settings.data_dir / "reviews" / (
        f"labels-{args.batch}.csv" if args.batch else "labels.csv"))
    _write_csv(rows, reviews.EXPORT_FIELDS, out)
    if args.predictions:
        _write_csv(predicted, PREDICTION_FIELDS, args.predictions)
    if out != "-":
        print(f"{len(rows)} reviewed stud{'y' if len(rows) == 1 else 'ies'} -> {out}")
        if args.predictions:
            print(f"the model's predictions of them -> {args.predictions}")
    return 0


def cmd_agreement(args: argparse.Namespace) -> int:
    from worker.store import reviews

    rt = read_runtime(args)
    run_id = _run_id(rt, args.batch)
    with rt.db.session() as s:
        shown = reviews.agreement(s, run_id)
    if args.json:
        print(json.dumps(shown, indent=2))
        return 0
    print(f"{shown['reviews']} verdict(s) on {shown['studies']} stud(ies) by "
          f"{', '.join(shown['reviewers']) or 'nobody yet'}")
    print(f"{'label':<28} {'agree':>6} {'disagree':>9} {'n/a':>5} {'agreement':>10}")
    for row in shown["labels"]:
        share = "-" if row["agreement"] is None else f"{100 * row['agreement']:.1f} %"
        print(f"{row['label']:<28} {row['agree']:>6} {row['disagree']:>9} "
              f"{row['not_assessable']:>5} {share:>10}")
    return 0
