"""Evaluation against an independent computation (scikit-learn), on crafted predictions and
CheXpert-style labels with -1 and blanks, under each policy; and the command's outputs."""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import precision_recall_fscore_support

from models.labels import CHEXPERT_LABELS
from tests.peers import BIN
from worker.research.evaluate import COMPETITION, Policy, evaluate, load_labels, load_predictions

N = 80


def crafted(tmp_path: Path, seed: int = 3) -> tuple[Path, Path]:
    """Labels (1, 0, -1, blank; several rows per study, CheXpert's Path layout) and
    predictions (ok answers, refusals, truncations, skipped and failed studies)."""
    rng = np.random.default_rng(seed)
    labels, preds = tmp_path / "labels.csv", tmp_path / "predictions.jsonl"
    with labels.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["Path", "Sex", *CHEXPERT_LABELS])
        for i in range(N):
            values = rng.choice(["1", "0", "-1", "", "1.0", "0.0"], size=len(CHEXPERT_LABELS),
                                p=[0.25, 0.35, 0.1, 0.2, 0.05, 0.05])
            for view in ("view1_frontal.jpg", "view2_lateral.jpg"):  # a study's two images
                writer.writerow([f"test/patient{i:05d}/study1/{view}", "F", *values])
        writer.writerow(["test/patient99999/study1/view1_frontal.jpg", "M",
                         *["1"] * len(CHEXPERT_LABELS)])  # labels without a prediction
    with preds.open("w") as fh:
        for i in range(N):
            state, status = "done", "ok"
            roll = rng.random()
            if roll < 0.06:
                status = "refused"
            elif roll < 0.10:
                status = "truncated"
            elif roll < 0.13:
                state, status = "skipped", ""
            elif roll < 0.15:
                state, status = "failed", ""
            row = {"study_id": f"test/patient{i:05d}/study1", "state": state,
                   "status": status, "reason": "lateral view" if state == "skipped" else ""}
            for label in CHEXPERT_LABELS:
                row[label] = int(status == "ok" and rng.random() < 0.3)
            fh.write(json.dumps(row) + "\n")
    return preds, labels


def gold_by_hand(labels: Path, policy: Policy) -> dict[str, dict[str, int | None]]:
    """The labels file read here, without worker.research.evaluate: study -> class -> 1, 0, or None
    (does not count).  A study is its images' folder (CheXpert: one row per image)."""
    def value(text: str) -> int | None:
        if text == "":
            return 0 if policy.blank == "negative" else None
        if text in ("1", "1.0"):
            return 1
        if text in ("0", "0.0"):
            return 0
        assert text == "-1", text
        return {"positive": 1, "negative": 0, "ignore": None}[policy.uncertain]

    with labels.open(newline="") as fh:
        header, *rows = list(csv.reader(fh))
    out: dict[str, dict[str, int | None]] = {}
    for row in rows:
        study = row[header.index("Path")].rsplit("/", 1)[0]
        out.setdefault(study, {c: value(row[header.index(c)].strip())
                               for c in CHEXPERT_LABELS})
    return out


def reference(preds: Path, labels: Path, policy: Policy) -> dict[str, tuple[float, ...]]:
    """The same figures the plain way: the files read here, scikit-learn class by class."""
    gold = gold_by_hand(labels, policy)
    predicted = {r["study_id"]: r for r in map(json.loads, preds.read_text().splitlines())}
    out = {}
    for label in CHEXPERT_LABELS:
        y_true, y_pred = [], []
        for study, values in gold.items():
            row = predicted.get(study)
            if row is None or row["state"] != "done":
                continue
            if row["status"] in ("refused", "truncated") and policy.not_read == "exclude":
                continue
            truth = values[label]
            if truth is None:
                continue
            y_true.append(truth)
            y_pred.append(int(row[label]))
        p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, average="binary",
                                                     pos_label=1, zero_division=0)
        out[label] = (float(p), float(r), float(f), int(sum(y_true)))
    return out


@pytest.mark.parametrize("policy", [Policy(), Policy("positive", "negative", "negative"),
                                    Policy("negative", "ignore", "exclude"),
                                    Policy("ignore", "ignore", "negative")])
def test_figures_equal_scikit_learn(tmp_path: Path, policy: Policy) -> None:
    preds, labels = crafted(tmp_path)
    result = evaluate(load_predictions(preds), load_labels(labels, policy), policy,
                      bootstrap=200)
    expected = reference(preds, labels, policy)
    for c in result["classes"]:
        p, r, f, support = expected[c["label"]]
        assert (c["precision"], c["recall"], c["f1"], c["support"]) == pytest.approx(
            (p, r, f, support)), c["label"]
        assert c["f1_low"] <= c["f1"] + 1e-9 and c["f1"] <= c["f1_high"] + 1e-9
    assert result["macro_f1_all"] == pytest.approx(np.mean([v[2] for v in expected.values()]))
    assert result["macro_f1_competition"] == pytest.approx(
        np.mean([expected[c][2] for c in COMPETITION]))
    low, high = result["macro_f1_all_ci"]
    assert low <= result["macro_f1_all"] <= high
    excluded = result["studies_excluded"]
    assert excluded["no prediction"] == 1 == len(set(gold_by_hand(labels, policy)) - {
        json.loads(line)["study_id"] for line in preds.read_text().splitlines()})
    assert sum(v for k, v in excluded.items() if k.startswith("not run")) > 0
    if policy.not_read == "exclude":
        assert any(k.startswith("model answer") for k in excluded)
    else:
        assert result["studies_not_read_counted_as_negative"] > 0


@pytest.mark.integration  # the CLI as a subprocess
def test_the_command_writes_table_chart_and_json(tmp_path: Path) -> None:
    preds, labels = crafted(tmp_path)
    out = subprocess.run([str(BIN / "cxr-gateway"), "evaluate", str(preds), str(labels),
                          "--bootstrap", "100", "--out", str(tmp_path / "eval")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    table = (tmp_path / "eval" / "evaluation.md").read_text()
    assert "| **Atelectasis** |" in table and "| 67.2 |" in table  # the paper's column
    assert "Macro-F1 (5 classes)" in table and "uncertain (-1): ignore" in table
    assert (tmp_path / "eval" / "f1.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    result = json.loads((tmp_path / "eval" / "evaluation.json").read_text())
    assert result["policy"] == {"uncertain": "ignore", "blank": "negative",
                                "not_read": "negative"}
    bad = subprocess.run([str(BIN / "cxr-gateway"), "evaluate", str(preds), str(preds)],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and bad.stderr.startswith("error: ")
