"""What ``evaluate`` writes: the markdown laid out like the paper's Table 1 (with the
paper's NV-Reason-CXR-3B column beside this run's), the per-class F1 chart, and the JSON.

A mock result says MOCK in each of them (the markdown's first line, the chart's title,
the JSON's ``mock`` and ``warning``), so no output of a wiring test reads as a figure.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from worker.research.evaluate import (
    COMPETITION,
    PAPER_F1,
    PAPER_MACRO5,
    PAPER_MACRO_ALL,
    TABLE1_ORDER,
)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def markdown(result: Mapping[str, Any]) -> str:
    """Laid out like the paper's Table 1, with the paper's NV-Reason-CXR-3B column."""
    by_label = {c["label"]: c for c in result["classes"]}
    lines = [f"**{result['warning']}.**", ""] if result.get("mock") else []
    if result.get("model"):
        lines += [f"Model: {result['model']}.", ""]
    lines += ["| Abnormality class | This run F1 % [95% CI] | Precision % | Recall % | "
              "Support | NV-Reason-CXR-3B (paper) |", "| --- | --- | --- | --- | --- | --- |"]
    for label in TABLE1_ORDER:
        c = by_label[label]
        ci = f" [{_pct(c['f1_low'])}, {_pct(c['f1_high'])}]" if c["f1_low"] is not None else ""
        name = f"**{label}**" if label in COMPETITION else label
        lines.append(f"| {name} | {_pct(c['f1'])}{ci} | {_pct(c['precision'])} | "
                     f"{_pct(c['recall'])} | {c['support']} | {PAPER_F1[label]:.1f} |")
    for key, paper, title in (("competition", PAPER_MACRO5, "Macro-F1 (5 classes)"),
                              ("all", PAPER_MACRO_ALL, "Macro-F1 (all)")):
        macro = result[f"macro_f1_{key}"]
        interval = result.get(f"macro_f1_{key}_ci")
        shown = _pct(macro) + (f" [{_pct(interval[0])}, {_pct(interval[1])}]"
                               if interval else "")
        lines.append(f"| {title} | {shown} | | | | {paper:.1f} |")
    excluded = "; ".join(f"{k}: {v}" for k, v in result["studies_excluded"].items()) or "none"
    lines += ["", f"Studies counted: {result['studies_counted']}. Excluded: {excluded}.",
              f"Policy: {result['policy_text']}.",
              f"Confidence intervals: percentile bootstrap over studies, "
              f"{result['bootstrap']['resamples']} resamples (seed "
              f"{result['bootstrap']['seed']}). Bold: the five competition classes. "
              "The paper's column is copied from its Table 1, not recomputed."]
    return "\n".join(lines) + "\n"


def chart_title(result: Mapping[str, Any]) -> str:
    """The chart's title: MOCK first when the mock backend's predictions were scored."""
    return (("MOCK backend (reads no image): " if result.get("mock") else "")
            + f"Per-class F1 ({result['studies_counted']} studies; macro-F1 "
            f"{100 * result['macro_f1_all']:.1f} all, "
            f"{100 * result['macro_f1_competition']:.1f} five classes)")


def chart(result: Mapping[str, Any], path: Path) -> Path:
    """Per-class F1, this run beside the paper (matplotlib, headless)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_label = {c["label"]: c for c in result["classes"]}
    x = np.arange(len(TABLE1_ORDER))
    ours = [100 * by_label[c]["f1"] for c in TABLE1_ORDER]
    err_low = [100 * (by_label[c]["f1"] - (by_label[c]["f1_low"] or by_label[c]["f1"]))
               for c in TABLE1_ORDER]
    err_high = [100 * ((by_label[c]["f1_high"] or by_label[c]["f1"]) - by_label[c]["f1"])
                for c in TABLE1_ORDER]
    fig, ax = plt.subplots(figsize=(12, 5))
    ax.bar(x - 0.2, ours, 0.4, yerr=[err_low, err_high], capsize=3, label="this run (95% CI)")
    ax.bar(x + 0.2, [PAPER_F1[c] for c in TABLE1_ORDER], 0.4,
           label="NV-Reason-CXR-3B, paper Table 1")
    ax.set_xticks(x, TABLE1_ORDER, rotation=40, ha="right")
    ax.set_ylabel("F1 (%)")
    ax.set_ylim(0, 100)
    ax.set_title(chart_title(result))
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write(result: Mapping[str, Any], out_dir: Path) -> dict[str, Path]:
    """evaluation.json, evaluation.md and (with matplotlib) f1.png into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "evaluation.json", "markdown": out_dir / "evaluation.md"}
    paths["json"].write_text(json.dumps(result, indent=2))
    paths["markdown"].write_text(markdown(result))
    try:
        paths["chart"] = chart(result, out_dir / "f1.png")
    except ImportError:  # the chart's extra (matplotlib) is not installed: the rest stands
        print("warning: no chart: install matplotlib (pip install -e .[eval])")
    return paths
