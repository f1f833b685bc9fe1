"""``cxr-gateway evaluate``: a batch's predictions against CheXpert-style labels, with the
paper's Table 1 beside them (see ``worker/research/evaluate.py``)."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
    parser.add_argument("--include-mock", action="store_true",
                        help="score predictions of the mock backend too (left out by "
                        "default: it reads no image); every output then says MOCK")
    parser.add_argument("--per-model", action="store_true",
                        help="a file mixing models (backend, model id, revision): one "
                        "evaluation per model, each in OUT/<model> (by default such a file "
                        "is refused)")
    parser.add_argument("--model", help="evaluate only this model's predictions "
                        "(backend|model_id@revision, as the refusal lists them)")
    parser.set_defaults(func=cmd_evaluate, quiet=True)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from worker.research.evaluate import (
        EvaluationError,
        Policy,
        evaluate,
        evaluate_per_model,
        for_model,
        load_labels,
        load_predictions,
    )
    from worker.research.evaluate_outputs import write

    try:
        policy = Policy(args.uncertain, args.blank, args.not_read)
        predictions: Mapping[str, Mapping[str, Any]] = load_predictions(
            Path(args.predictions))
        labels = load_labels(Path(args.labels), policy, args.id_column)
        if args.model:
            predictions = for_model(predictions, args.model)
        if args.per_model:
            results = evaluate_per_model(predictions, labels, policy, args.bootstrap,
                                         args.seed, args.include_mock)
        else:
            results = {"": evaluate(predictions, labels, policy, args.bootstrap, args.seed,
                                    args.include_mock)}
    except (EvaluationError, OSError, ValueError, KeyError) as exc:
        raise CommandError(str(exc)) from None
    out = Path(args.out) if args.out else Path(args.predictions).parent / "evaluation"
    if any(r.get("mock") for r in results.values()):
        print("MOCK: scored predictions of the mock backend, which reads no image "
              "(--include-mock); every output says so")
    for model, result in results.items():
        where = out / _folder(model) if model else out
        paths = write(result, where)
        print((where / "evaluation.md").read_text())
        for path in paths.values():
            print(path)
    return 0


def _folder(model: str) -> str:
    """A model key as a folder name (``local|nvidia/NV-Reason-CXR-3B@abc`` ->
    ``local_nvidia_NV-Reason-CXR-3B_abc``)."""
    return "".join(c if c.isalnum() or c in "-." else "_" for c in model).strip("_") or "model"
