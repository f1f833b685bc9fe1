"""Report pages from a degenerate answer: one unspaced run against a normal report, same run.

A model can degenerate into a long run with no space; the page layout used to cut such a
run one character at a time (about cubic: 10.6 s for 2,000 characters).  This lays out
and draws the whole page set for a normal report (the baseline) and for reports whose
reasoning and findings are one unspaced run of 500 to 50,000 characters, and prints the
median seconds of each.  Ends with ``RESULT unspaced_50k_over_normal=<ratio>``; the issue's
target is under a second for the 50,000-character run.
"""

from __future__ import annotations

import argparse
import statistics
import time

from dicom_gateway.documents.draft import Algorithm, DraftReport
from dicom_gateway.documents.layout import render_pages

NORMAL = ("The heart size is normal. There is mild interstitial edema in both lower zones. "
          "No pneumothorax. Support devices: none. ") * 6


def draft(reasoning: str, findings: str) -> DraftReport:
    return DraftReport(status="ok", labels=("Edema",), reasoning=reasoning, is_mock=False,
                       algorithm=Algorithm("NV-Reason-CXR-3B", "hf:nvidia/NV-Reason-CXR-3B@x",
                                           "NVIDIA"),
                       report_sections=(("FINDINGS", (findings,)), ("IMPRESSION", ("Edema.",))),
                       report_text=findings)


def median_seconds(d: DraftReport, runs: int) -> tuple[float, int]:
    times, pages = [], 0
    for _ in range(runs):
        t = time.perf_counter()
        pages = len(render_pages(d, None, version=1, sr_uid="2.25.1"))
        times.append(time.perf_counter() - t)
    return statistics.median(times), pages


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    base, base_pages = median_seconds(draft(NORMAL, NORMAL), args.runs)
    print(f"normal report            {base:7.3f} s  {base_pages} page(s)")
    ratio = 0.0
    for n in (500, 1_000, 2_000, 50_000):
        run = "".join("abcdefghijklmnopqrstuvwxyzWM.,1-"[(i * 7) % 32] for i in range(n))
        seconds, pages = median_seconds(draft(run, run), args.runs)
        ratio = seconds / base
        print(f"unspaced run of {n:>6}   {seconds:7.3f} s  {pages} page(s)  ({ratio:.2f}x)")
    print(f"RESULT unspaced_50k_over_normal={ratio:.2f}")


if __name__ == "__main__":
    main()
