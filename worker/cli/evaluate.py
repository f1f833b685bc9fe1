"""``cxr-gateway evaluate``: a batch's predictions against CheXpert-style labels, with the
paper's Table 1 beside them (see ``worker/research/evaluate.py``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from worker.cli.errors import CommandError

if TYPE_CHECKING:
    from worker.cli.common import Commands


def register(commands: Commands) -> None:
    parser = commands.add_parser("evaluate", help="predictions against CheXpert-style "
                                 "labels: per-class precision, recall, F1, macro-F1, "
                                 "bootstrap CIs")
    parser.add_argument("predictions", help="a batch's predictions.jsonl or predictions.csv")
    parser.add_argument("labels", help="labels CSV: the 14 CheXpert columns (1, 0, -1, "
                        "blank)")
    parser.add_argument("--uncertain", choices=["ignore", "positive", "negative"],
                        default="ignore", help="how -1 counts (default: ignored for that "
                        "class)")
    parser.add_argument("--blank", choices=["negative", "ignore"], default="negative",
                        help="how a blank counts (default: negative)")
    parser.add_argument("--not-read", choices=["negative", "exclude"], default="negative",
                        help="refused/truncated/unparseable/no-label answers: as no labels "
                             "(default, as the training parser reads them) or left out")
    parser.add_argument("--id-column", help="labels: the study id column (default "
                        "study_id, else the folder of Path)")
    parser.add_argument("--bootstrap", type=int, default=1000,
                        help="bootstrap resamples for the 95%% intervals (0: none)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    parser.add_argument("--out", help="output folder (default: evaluation/ beside "
                        "predictions)")
    parser.set_defaults(func=cmd_evaluate, quiet=True)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from worker.research.evaluate import (
        EvaluationError,
        Policy,
        evaluate,
        load_labels,
        load_predictions,
        write,
    )

    try:
        policy = Policy(args.uncertain, args.blank, args.not_read)
        predictions = load_predictions(Path(args.predictions))
        labels = load_labels(Path(args.labels), policy, args.id_column)
        result = evaluate(predictions, labels, policy, args.bootstrap, args.seed)
    except (EvaluationError, OSError, ValueError, KeyError) as exc:
        raise CommandError(str(exc)) from None
    out = Path(args.out) if args.out else Path(args.predictions).parent / "evaluation"
    paths = write(result, out)
    print((out / "evaluation.md").read_text())
    for path in paths.values():
        print(path)
    return 0
