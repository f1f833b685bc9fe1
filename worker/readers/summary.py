"""A reader study's figures, computed from its tidy rows (``export``): pure functions, so a
test can check every number by hand.

- Per statement and condition: the mean, the sample standard deviation (n - 1) and the
  count of answers (the paper's Figures 1, 3 and 4).  B3, "approximate percentage of time
  saved on this case", is calculated as the paper did, not asked: for each reader and case,
  100 x (1 - time under the condition / time under no AI).
- Report time per condition for normal, abnormal and all cases: mean and deviation in
  minutes over reads (Figure 2); a read's time is the server's, from the case shown to the
  report submitted; the page's active time is given beside it.
- The ratio of mean report time under full reasoning to no AI, with a percentile
  bootstrap interval over cases (cases resampled with replacement, every read of a drawn
  case counted; seeded, so the same data give the same interval), and a paired Wilcoxon
  signed-rank test over cases (each case's mean time over readers, no AI against full
  reasoning; scipy's two-sided test, whose statistic is the smaller signed-rank sum; scipy
  comes with the ``eval`` extra, which the gateway image installs).
Only reads that are done count.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from worker.readers import export
from worker.store import reader_design as design
from worker.store.reader_studies import ReaderCase, ReaderStudy, readers_of

RESAMPLES = 2000
GROUPS = ("abnormal", "normal", "all")
PAPER_MINUTES = {("abnormal", design.NO_AI): 5.5, ("abnormal", design.FULL): 2.5}
PAPER_TIME_WORDS = "normal cases: about equal under every condition"

Row = Mapping[str, Any]


def mean_sd(values: Sequence[float]) -> dict[str, Any]:
    """Mean, sample standard deviation (None below two values) and count."""
    n = len(values)
    if not n:
        return {"mean": None, "sd": None, "n": 0}
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else None
    return {"mean": round(mean, 4), "sd": None if sd is None else round(sd, 4), "n": n}


def _times(reads: Iterable[Row]) -> dict[tuple[str, int, str], float]:
    """(reader, case, condition) -> report seconds, for reads done."""
    return {(r["reader"], int(r["case"]), r["condition"]): float(r["report_seconds"])
            for r in reads if r.get("done") and r.get("report_seconds") is not None}


def time_saved(reads: Iterable[Row]) -> dict[str, list[float]]:
    """B3 per condition: 100 x (1 - t / t under no AI), per reader and case."""
    times = _times(reads)
    out: dict[str, list[float]] = defaultdict(list)
    for (reader, case, condition), seconds in sorted(times.items()):
        base = times.get((reader, case, design.NO_AI))
        if condition != design.NO_AI and base:
            out[condition].append(100.0 * (1.0 - seconds / base))
    return out


def item_stats(answers: Iterable[Row], reads: Sequence[Row]) -> list[dict[str, Any]]:
    """Every statement under each condition it is asked in, and B3 calculated."""
    values: dict[tuple[str, str], list[float]] = defaultdict(list)
    for a in answers:
        values[(a["item"], a["condition"])].append(float(a["value"]))
    out = []
    for item in design.ITEMS:
        for condition in item.conditions:
            out.append({"item": item.code, "section": item.section, "text": item.text,
                        "condition": condition, **mean_sd(values[(item.code, condition)]),
                        "paper": item.paper if condition == design.FULL else None,
                        "paper_words": item.paper_words})
    saved = time_saved(reads)
    for condition in (design.LABELS, design.FULL):
        out.append({"item": design.TIME_SAVED, "section": design.EFFICIENCY,
                    "text": design.TIME_SAVED_TEXT, "condition": condition,
                    **mean_sd(saved[condition]), "paper": None, "paper_words": ""})
    return out


def _in_group(row: Row, group: str) -> bool:
    return group == "all" or row.get("reference") == group


def time_stats(reads: Sequence[Row]) -> list[dict[str, Any]]:
    """Report minutes (server) and active minutes per group and condition."""
    out = []
    for group in GROUPS:
        for condition in design.CONDITIONS:
            rows = [r for r in reads if r.get("done") and r["condition"] == condition
                    and _in_group(r, group) and r.get("report_seconds") is not None]
            minutes = [float(r["report_seconds"]) / 60 for r in rows]
            active = [float(r["active_seconds"]) / 60 for r in rows
                      if r.get("active_seconds") is not None]
            out.append({"group": group, "condition": condition, **mean_sd(minutes),
                        "active_mean": mean_sd(active)["mean"],
                        "paper_minutes": PAPER_MINUTES.get((group, condition))})
    return out


def _by_case(reads: Iterable[Row], group: str) -> dict[int, dict[str, list[float]]]:
    out: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for (_reader, case, condition), seconds in _times(
            r for r in reads if _in_group(r, group)).items():
        out[case][condition].append(seconds)
    return out


def bootstrap_ratio(cases: Mapping[int, Mapping[str, Sequence[float]]], resamples: int,
                    seed: int) -> tuple[float | None, float | None, float | None]:
    """(ratio of mean full to mean no-AI time, 2.5th and 97.5th bootstrap percentiles)."""
    keys = [c for c in sorted(cases) if cases[c].get(design.NO_AI) and cases[c].get(design.FULL)]
    if not keys:
        return None, None, None
    sums = np.array([[sum(cases[c][design.FULL]), len(cases[c][design.FULL]),
                      sum(cases[c][design.NO_AI]), len(cases[c][design.NO_AI])]
                     for c in keys], dtype=np.float64)

    def ratio(totals: np.ndarray) -> np.ndarray:
        return (totals[..., 0] / totals[..., 1]) / (totals[..., 2] / totals[..., 3])

    point = float(ratio(sums.sum(axis=0)))
    draws = np.random.default_rng(seed).integers(0, len(keys), size=(resamples, len(keys)))
    spread = ratio(sums[draws].sum(axis=1))
    lo, hi = (float(v) for v in np.percentile(spread, [2.5, 97.5]))
    return point, lo, hi


def paired_test(cases: Mapping[int, Mapping[str, Sequence[float]]]) -> dict[str, Any]:
    """Wilcoxon signed-rank over cases: each case's mean no-AI time against its mean
    full-reasoning time (scipy, two-sided); None with the reason when it cannot run."""
    try:
        from scipy.stats import wilcoxon
    except ImportError:  # the eval extra is not installed: the rest of the summary stands
        return {"statistic": None, "p_value": None, "cases": 0,
                "why_not": "scipy is not installed (pip install -e .[eval])"}

    pairs = [(float(np.mean(v[design.NO_AI])), float(np.mean(v[design.FULL])))
             for _, v in sorted(cases.items()) if v.get(design.NO_AI) and v.get(design.FULL)]
    if not pairs:
        return {"statistic": None, "p_value": None, "cases": 0,
                "why_not": "no case has both a no-AI and a full-reasoning read"}
    if all(a == b for a, b in pairs):
        return {"statistic": None, "p_value": None, "cases": len(pairs),
                "why_not": "every case's times are equal"}
    x, y = zip(*pairs, strict=True)
    found = wilcoxon(x, y)
    return {"statistic": float(found.statistic), "p_value": float(found.pvalue),
            "cases": len(pairs), "why_not": ""}


def ratios(reads: Sequence[Row], resamples: int = RESAMPLES, seed: int = 0
           ) -> list[dict[str, Any]]:
    """Per group: the time ratio of full reasoning to no AI, its interval, the test."""
    out = []
    for group in GROUPS:
        cases = _by_case(reads, group)
        point, lo, hi = bootstrap_ratio(cases, resamples, seed)
        out.append({"group": group, "ratio": point, "ci_low": lo, "ci_high": hi,
                    "resamples": resamples, "wilcoxon": paired_test(cases)})
    return out


def summarise(study: Mapping[str, Any], reads: Sequence[Row], answers: Sequence[Row],
              seed: int = 0) -> dict[str, Any]:
    """The whole summary of one study (``study``: name, mock, readers, cases)."""
    done = [r for r in reads if r.get("done")]
    return {**study, "reads_done": len(done), "reads_total": len(reads),
            "items": item_stats(answers, reads), "times": time_stats(reads),
            "ratios": ratios(reads, seed=seed), "paper_time_words": PAPER_TIME_WORDS}



def of_study(session: Session, study: ReaderStudy) -> dict[str, Any]:
    """The summary of a stored study."""
    cases = session.scalar(select(func.count()).select_from(ReaderCase).where(
        ReaderCase.study_id == study.id)) or 0
    return summarise({"name": study.name, "mock": study.mock, "readers": readers_of(study),
                      "cases": int(cases), "seed": study.seed},
                     export.read_rows(session, study), export.answer_rows(session, study),
                     seed=study.seed)
