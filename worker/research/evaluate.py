"""``cxr-gateway evaluate``: predictions against reference labels, as the paper does it.

The paper (section 4.2, Table 1) reports per-class F1 on the CheXpert test set (518
frontal studies, expert labels, binary), macro-F1 over the 14 classes and over the five
competition classes.  CheXpert-style label files may also hold -1 (uncertain) and blanks
(not mentioned), so how those count is a policy, chosen on the command line and written
into every output, as is how studies the model did not read count (a refusal, a cut-off
or unparseable answer, an answer with no label).

Results that cannot be misread: predictions made by the mock backend (status ``mock``)
are no reading of an image, so they are left out unless ``include_mock`` is asked for,
and then every output says MOCK (the first line, the markdown, the JSON, the chart's
title).  A predictions file whose studies were read by more than one model (backend,
model id or revision) is refused with the models and their counts, unless it is
evaluated per model (``evaluate_per_model``) or for one of them (``model``): one table
over two models would be a figure of neither.  The outputs (the markdown laid out like
Table 1, the chart, the files) are ``worker.research.evaluate_outputs``'.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from models.labels import CHEXPERT_LABELS

COMPETITION = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")
# The order and the NV-Reason-CXR-3B column of the paper's Table 1 (per-class F1, %).
TABLE1_ORDER = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion",
                "Pleural Other", "Enlarged Cardiomediastinum", "Fracture", "Lung Lesion",
                "Lung Opacity", "Pneumonia", "Pneumothorax", "Support Devices", "No Finding")
PAPER_F1 = {"Atelectasis": 67.2, "Cardiomegaly": 74.7, "Consolidation": 23.5, "Edema": 66.7,
            "Pleural Effusion": 71.1, "Pleural Other": 22.2,
            "Enlarged Cardiomediastinum": 84.9, "Fracture": 20.0, "Lung Lesion": 47.1,
            "Lung Opacity": 88.1, "Pneumonia": 44.4, "Pneumothorax": 57.1,
            "Support Devices": 93.0, "No Finding": 79.5}
PAPER_MACRO5, PAPER_MACRO_ALL = 60.6, 60.0
NOT_READ = ("refused", "truncated", "unparseable", "no_labels")
IGNORE = -9  # a gold value that does not count for its class
_COMPETITION_COLUMNS = [CHEXPERT_LABELS.index(c) for c in COMPETITION]


class EvaluationError(ValueError):
    """The inputs cannot be evaluated; the message says why."""


MOCK_EXCLUDED = "mock backend, not a reading (--include-mock to score it, marked MOCK)"
MOCK_BANNER = ("MOCK: these predictions come from the mock backend, which reads no image; "
               "the figures below measure nothing about a model")


def is_mock(row: Mapping[str, Any]) -> bool:
    """A prediction the mock backend made (its status, or its backend's name)."""
    return str(row.get("status") or "") == "mock" or str(row.get("backend") or "") == "mock"


def model_of(row: Mapping[str, Any]) -> str | None:
    """Which model made a prediction (``backend|model_id@revision``, as
    ``models.backend.model_key`` spells it); None for a study the model did not run."""
    if str(row.get("state")) != "done":
        return None
    if not any(row.get(k) for k in ("backend", "model_id", "model_revision")):
        return "unknown model"
    return f"{row.get('backend')}|{row.get('model_id')}@{row.get('model_revision')}"


def models_in(predictions: Mapping[str, Mapping[str, Any]]) -> dict[str, int]:
    """Studies per model among those the model ran, most first."""
    out: dict[str, int] = {}
    for row in predictions.values():
        key = model_of(row)
        if key is not None:
            out[key] = out.get(key, 0) + 1
    return dict(sorted(out.items(), key=lambda kv: (-kv[1], kv[0])))


def for_model(predictions: Mapping[str, Mapping[str, Any]], model: str
              ) -> dict[str, Mapping[str, Any]]:
    """The predictions of one model, with the studies no model ran (they are excluded
    the same way whichever model is evaluated)."""
    known = models_in(predictions)
    if model not in known:
        raise EvaluationError(f"no prediction from model {model!r}; the file has "
                              + "; ".join(f"{k} ({v} studies)" for k, v in known.items()))
    return {k: r for k, r in predictions.items() if model_of(r) in (None, model)}


@dataclass(frozen=True)
class Policy:
    uncertain: str = "ignore"  # -1: ignore (that class, that study) | positive | negative
    blank: str = "negative"  # blank: negative | ignore
    not_read: str = "negative"  # refused/truncated/...: negative (no labels) | exclude

    def __post_init__(self) -> None:
        if self.uncertain not in ("ignore", "positive", "negative"):
            raise EvaluationError("--uncertain must be ignore, positive or negative")
        if self.blank not in ("negative", "ignore"):
            raise EvaluationError("--blank must be negative or ignore")
        if self.not_read not in ("negative", "exclude"):
            raise EvaluationError("--not-read must be negative or exclude")

    def gold(self, value: str) -> int:
        """A label file's cell as this policy counts it: 1, 0 or IGNORE."""
        text = value.strip()
        if text == "":
            return 0 if self.blank == "negative" else IGNORE
        number = float(text)
        if number == 1:
            return 1
        if number == 0:
            return 0
        if number == -1:
            return {"ignore": IGNORE, "positive": 1, "negative": 0}[self.uncertain]
        raise EvaluationError(f"label value {value!r} is not 1, 0, -1 or blank")

    def describe(self) -> str:
        return (f"uncertain (-1): {self.uncertain}; blank: {self.blank}; studies the model "
                f"did not read (refused, truncated, unparseable, no labels): {self.not_read}")


def load_labels(path: Path, policy: Policy, id_column: str | None = None
                ) -> dict[str, dict[str, int]]:
    """Study id -> class -> gold (1, 0 or IGNORE).  The study id is ``id_column``, else
    ``study_id``, else the folder of ``Path`` (CheXpert's layout: one row per image)."""
    out: dict[str, dict[str, int]] = {}
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        fields = reader.fieldnames or []
        missing = [c for c in CHEXPERT_LABELS if c not in fields]
        if missing:
            raise EvaluationError(f"{path}: no column for {', '.join(missing)}")
        column = id_column or ("study_id" if "study_id" in fields else
                               "Path" if "Path" in fields else None)
        if column is None or column not in fields:
            raise EvaluationError(f"{path}: no study id column (study_id, Path or "
                                  f"--id-column); it has {', '.join(fields)}")
        for row in reader:
            key = row[column].strip()
            if column == "Path" and id_column is None:
                key = str(Path(key).parent)
            if key not in out:  # a study's other images carry the same labels
                out[key] = {c: policy.gold(row[c] or "") for c in CHEXPERT_LABELS}
    return out


def load_predictions(path: Path) -> dict[str, dict[str, Any]]:
    """Study id -> prediction row (``batch``'s predictions.jsonl or .csv)."""
    rows: list[dict[str, Any]] = []
    if path.suffix == ".jsonl":
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    else:
        with path.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
    if rows and "study_id" not in rows[0]:
        raise EvaluationError(f"{path}: not a predictions file (no study_id column)")
    return {str(r["study_id"]): r for r in rows}


@dataclass(frozen=True)
class ClassScore:
    label: str
    precision: float
    recall: float
    f1: float
    support: int  # gold positives that counted
    counted: int  # studies that counted for this class
    tp: int
    fp: int
    fn: int
    f1_low: float | None = None
    f1_high: float | None = None


def _f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    """F1 with 0 where it is undefined (no positives, none predicted), as scikit-learn's
    zero_division=0 does."""
    denom = 2 * tp + fp + fn
    return np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)


@dataclass
class _Counted:
    """The studies that count, as 0/1 matrices (studies x the 14 classes)."""

    studies: list[str]
    excluded: dict[str, int]  # why a study does not count -> how many
    gold: np.ndarray  # 1, 0 or IGNORE
    predicted: np.ndarray  # 1 or 0


def _counted(predictions: Mapping[str, Mapping[str, Any]],
             labels: Mapping[str, Mapping[str, int]], policy: Policy) -> _Counted:
    """Which labelled studies count (the model read them, or the policy counts them as
    read), and why each other one does not."""
    counted: list[str] = []
    excluded: dict[str, int] = {}
    pred_rows: list[list[int]] = []
    gold_rows: list[list[int]] = []
    for study, gold in labels.items():
        row = predictions.get(study)
        if row is None:
            excluded["no prediction"] = excluded.get("no prediction", 0) + 1
            continue
        if str(row.get("state")) != "done":
            why = f"not run by the model ({row.get('state')}: {row.get('reason', '')})"
            excluded[why[:80]] = excluded.get(why[:80], 0) + 1
            continue
        status = str(row.get("status") or "")
        if status in NOT_READ and policy.not_read == "exclude":
            excluded[f"model answer {status}"] = excluded.get(f"model answer {status}", 0) + 1
            continue
        counted.append(study)
        gold_rows.append([gold[c] for c in CHEXPERT_LABELS])
        pred_rows.append([1 if str(row.get(c, 0)) in ("1", "True", "true") else 0
                          for c in CHEXPERT_LABELS])
    if not counted:
        raise EvaluationError("no study has both a prediction from the model and labels")
    return _Counted(counted, excluded, np.array(gold_rows), np.array(pred_rows))


def _confusion(g: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class (tp, fp, fn), each class counting only its non-ignored gold values."""
    valid = g != IGNORE
    return (((g == 1) & (p == 1) & valid).sum(0), ((g == 0) & (p == 1) & valid).sum(0),
            ((g == 1) & (p == 0) & valid).sum(0))


@dataclass
class _Intervals:
    """Percentile-bootstrap 95 % intervals: per class, and of the two macro-F1s."""

    low: np.ndarray | None = None
    high: np.ndarray | None = None
    macro: dict[str, list[float]] = field(default_factory=dict)  # all | competition


def _bootstrap(g: np.ndarray, p: np.ndarray, resamples: int, seed: int) -> _Intervals:
    """Resample studies with replacement ``resamples`` times (none: no intervals)."""
    if resamples <= 0:
        return _Intervals()
    rng = np.random.default_rng(seed)
    n = len(g)
    boot = np.empty((resamples, len(CHEXPERT_LABELS)))
    for b in range(resamples):
        idx = rng.integers(0, n, n)
        boot[b] = _f1(*_confusion(g[idx], p[idx]))
    out = _Intervals(np.percentile(boot, 2.5, axis=0), np.percentile(boot, 97.5, axis=0))
    for name, cols in (("all", list(range(len(CHEXPERT_LABELS)))),
                       ("competition", _COMPETITION_COLUMNS)):
        macro = boot[:, cols].mean(1)
        out.macro[name] = [float(np.percentile(macro, 2.5)), float(np.percentile(macro, 97.5))]
    return out


def _class_scores(g: np.ndarray, p: np.ndarray, ci: _Intervals) -> list[ClassScore]:
    """Precision, recall, F1 and support per class, with the class's interval."""
    tp, fp, fn = _confusion(g, p)
    f1 = _f1(tp, fp, fn)
    valid = g != IGNORE
    classes = []
    for i, label in enumerate(CHEXPERT_LABELS):
        predicted, positive = int(tp[i] + fp[i]), int(tp[i] + fn[i])
        classes.append(ClassScore(
            label=label, precision=float(tp[i] / predicted) if predicted else 0.0,
            recall=float(tp[i] / positive) if positive else 0.0, f1=float(f1[i]),
            support=positive, counted=int(valid[:, i].sum()), tp=int(tp[i]), fp=int(fp[i]),
            fn=int(fn[i]), f1_low=None if ci.low is None else float(ci.low[i]),
            f1_high=None if ci.high is None else float(ci.high[i])))
    return classes


def _screened(predictions: Mapping[str, Mapping[str, Any]], include_mock: bool
              ) -> tuple[dict[str, Mapping[str, Any]], set[str], str]:
    """(the predictions to score, the studies whose mock predictions were left out, the
    one model that made the rest).  Refuses a file mixing models, and one holding only
    mock predictions."""
    kept: dict[str, Mapping[str, Any]] = {}
    dropped: set[str] = set()
    for study, row in predictions.items():
        if not include_mock and str(row.get("state")) == "done" and is_mock(row):
            dropped.add(study)
            continue
        kept[study] = row
    models = models_in(kept)
    if len(models) > 1:
        raise EvaluationError(
            "the predictions come from more than one model: " + "; ".join(
                f"{k} ({v} studies)" for k, v in models.items())
            + ". One table over several models is a figure of none: use --per-model "
              "(one evaluation each) or --model KEY")
    if dropped and not models:
        raise EvaluationError(
            f"all {len(dropped)} predictions the model ran come from the mock backend, "
            "which reads no image: there is nothing to evaluate (--include-mock scores "
            "them anyway, every output marked MOCK)")
    return kept, dropped, next(iter(models), "")


def evaluate(predictions: Mapping[str, Mapping[str, Any]],
             labels: Mapping[str, Mapping[str, int]], policy: Policy,
             bootstrap: int = 1000, seed: int = 0, include_mock: bool = False
             ) -> dict[str, Any]:
    """Per-class precision/recall/F1/support, macro-F1 (14 and 5), bootstrap 95 % CIs;
    mock predictions left out unless ``include_mock`` (then the result says MOCK)."""
    predictions, dropped, model = _screened(predictions, include_mock)
    counted = _counted(predictions, labels, policy)
    mock_left_out = sum(1 for study in labels if study in dropped)
    if mock_left_out:
        counted.excluded.pop("no prediction", None)
        missing = sum(1 for study in labels if study not in predictions
                      and study not in dropped)
        if missing:
            counted.excluded["no prediction"] = missing
        counted.excluded[MOCK_EXCLUDED] = mock_left_out
    mock = any(is_mock(predictions[s]) for s in counted.studies)
    g, p = counted.gold, counted.predicted
    f1 = _f1(*_confusion(g, p))
    ci = _bootstrap(g, p, bootstrap, seed)
    not_read = sum(1 for s in counted.studies
                   if str(predictions[s].get("status")) in NOT_READ)
    return {
        **({"warning": MOCK_BANNER} if mock else {}),
        "mock": mock, "model": model,
        "policy": asdict(policy), "policy_text": policy.describe(),
        "studies_counted": len(counted.studies), "studies_excluded": counted.excluded,
        "studies_not_read_counted_as_negative": not_read if policy.not_read == "negative"
        else 0,
        "classes": [asdict(c) for c in _class_scores(g, p, ci)],
        "macro_f1_all": float(f1.mean()),
        "macro_f1_competition": float(f1[_COMPETITION_COLUMNS].mean()),
        "macro_f1_all_ci": ci.macro.get("all"),
        "macro_f1_competition_ci": ci.macro.get("competition"),
        "bootstrap": {"resamples": bootstrap, "seed": seed},
        "paper": {"f1": PAPER_F1, "macro_f1_competition": PAPER_MACRO5,
                  "macro_f1_all": PAPER_MACRO_ALL,
                  "source": "NV-Reason-CXR-3B, Table 1 (CheXpert test set)"},
    }


def evaluate_per_model(predictions: Mapping[str, Mapping[str, Any]],
                       labels: Mapping[str, Mapping[str, int]], policy: Policy,
                       bootstrap: int = 1000, seed: int = 0, include_mock: bool = False
                       ) -> dict[str, dict[str, Any]]:
    """One evaluation per model the file holds (mock left out unless ``include_mock``)."""
    models = [m for m in models_in(predictions)
              if include_mock or not all(is_mock(r) for r in predictions.values()
                                         if model_of(r) == m)]
    if not models:
        raise EvaluationError("no prediction from a model other than the mock backend "
                              "(--include-mock scores the mock, marked MOCK)")
    return {m: evaluate(for_model(predictions, m), labels, policy, bootstrap, seed,
                        include_mock) for m in models}
