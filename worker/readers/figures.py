"""A reader study's summary written out: ``summary.json``, ``summary.md`` (our figures beside
the paper's published ones) and the paper's four charts as PNG:

- ``fig1_accuracy.png``: accuracy and reasoning quality under full reasoning (A1-A4),
- ``fig2_report_time.png``: mean report time per condition, normal and abnormal cases,
- ``fig3_time_efficiency.png``: time and efficiency (B1, B2), labels only beside full,
- ``fig4_trust.png``: trust and confidence (C1-C4), labels only beside full;
each bar a mean with its standard deviation.  The charts need matplotlib (the ``eval``
extra, as ``cxr-gateway evaluate``'s chart does); without it the tables are still written.
A study over mock results says MOCK in every title and at the top of the table.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from worker.store import reader_design as design

FIGURES = ("fig1_accuracy.png", "fig2_report_time.png", "fig3_time_efficiency.png",
           "fig4_trust.png")


def _num(value: Any, digits: int = 2) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _items_table(items: Sequence[Mapping[str, Any]]) -> list[str]:
    lines = ["| statement | condition | mean | sd | n | paper |", "|---|---|---|---|---|---|"]
    for row in items:
        paper = _num(row["paper"], 1) if row["paper"] is not None else row["paper_words"]
        lines.append(f"| {row['item']} {row['text']} | {design.CONDITION_NAMES[row['condition']]}"
                     f" | {_num(row['mean'])} | {_num(row['sd'])} | {row['n']} | {paper} |")
    return lines


def _times_table(summary: Mapping[str, Any]) -> list[str]:
    lines = ["| cases | condition | mean min | sd | reads | active mean min | paper min |",
             "|---|---|---|---|---|---|---|"]
    for row in summary["times"]:
        lines.append(f"| {row['group']} | {design.CONDITION_NAMES[row['condition']]} | "
                     f"{_num(row['mean'])} | {_num(row['sd'])} | {row['n']} | "
                     f"{_num(row['active_mean'])} | {_num(row['paper_minutes'], 1)} |")
    lines += ["", "| cases | full / no AI | 95% bootstrap CI | Wilcoxon W | p | paired cases |",
              "|---|---|---|---|---|---|"]
    for row in summary["ratios"]:
        test = row["wilcoxon"]
        lines.append(f"| {row['group']} | {_num(row['ratio'], 3)} | "
                     f"{_num(row['ci_low'], 3)} to {_num(row['ci_high'], 3)} | "
                     f"{_num(test['statistic'], 1) or test['why_not']} | "
                     f"{_num(test['p_value'], 4)} | {test['cases']} |")
    return lines


def markdown(summary: Mapping[str, Any]) -> str:
    """The summary as markdown tables, the paper's published numbers beside ours."""
    head = [f"# Reader study {summary['name']}", ""]
    if summary.get("mock"):
        head += ["**MOCK**: results of the mock backend (wiring only), not NV-Reason-CXR.", ""]
    head += [f"{len(summary['readers'])} readers, {summary['cases']} cases; "
             f"{summary['reads_done']} of {summary['reads_total']} reads done.", "",
             "Likert 1 (strongly disagree) to 5 (strongly agree); B3 calculated from the "
             "report times. Paper: NV-Reason-CXR section 4.1 (2 readers, 10 cases).", ""]
    return "\n".join([*head, *_items_table(summary["items"]), "", "## Report time", "",
                      *_times_table(summary), "", f"Paper: {summary['paper_time_words']}.",
                      ""])


def _bars(ax: Any, labels: list[str], series: list[tuple[str, list[Any]]]) -> None:
    width = 0.8 / max(len(series), 1)
    for k, (name, rows) in enumerate(series):
        xs = [i + (k - (len(series) - 1) / 2) * width for i in range(len(labels))]
        ax.bar(xs, [r["mean"] or 0 for r in rows], width, label=name,
               yerr=[r["sd"] or 0 for r in rows], capsize=3)
    ax.set_xticks(range(len(labels)), labels)


def charts(summary: Mapping[str, Any], out_dir: Path) -> list[Path]:
    """The four figures (ImportError without matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mark = "MOCK: " if summary.get("mock") else ""
    by = {(r["item"], r["condition"]): r for r in summary["items"]}
    times = {(r["group"], r["condition"]): r for r in summary["times"]}
    plans = [
        ("Accuracy and reasoning quality", ["A1", "A2", "A3", "A4"], [design.FULL]),
        ("Report time (minutes)", ["abnormal", "normal"], list(design.CONDITIONS)),
        ("Time and efficiency", ["B1", "B2"], [design.LABELS, design.FULL]),
        ("Trust and confidence", ["C1", "C2", "C3", "C4"], [design.LABELS, design.FULL]),
    ]
    written = []
    for name, (title, keys, conditions) in zip(FIGURES, plans, strict=True):
        fig, ax = plt.subplots(figsize=(7, 4))
        table = times if name == FIGURES[1] else by
        _bars(ax, keys, [(design.CONDITION_NAMES[c], [table[(k, c)] for k in keys])
                         for c in conditions])
        if name != FIGURES[1]:
            ax.set_ylim(0, 5.5)
            ax.set_ylabel("Likert (mean, sd)")
        ax.set_title(f"{mark}{title}: reader study {summary['name']}")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out_dir / name, dpi=110)
        plt.close(fig)
        written.append(out_dir / name)
    return written


def write(summary: Mapping[str, Any], out_dir: Path) -> tuple[list[Path], str]:
    """summary.json, summary.md and the charts; the paths, and a warning ("" for none)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out_dir / "summary.md").write_text(markdown(summary))
    paths = [out_dir / "summary.json", out_dir / "summary.md"]
    try:
        paths += charts(summary, out_dir)
    except ImportError:
        return paths, "no charts: install matplotlib (pip install -e .[eval])"
    return paths, ""
