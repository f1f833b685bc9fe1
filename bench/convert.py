"""Conversion cost against bare decoding, RG1_J2KR (JPEG 2000 lossless), same run.

Prints the median of N runs for: bare decode (pydicom + pylibjpeg-openjpeg), and the
full conversion (decode + mimic LUT + resize to the 476*476 budget + PNG encode).
Ends with ``RESULT convert_over_decode=<full / decode>``; target <= 1.2.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from pydicom import dcmread
from pydicom.data import get_testdata_file

from dicom_gateway.imaging.conversion import convert_dataset, decode
from dicom_gateway.imaging.names import MIMIC, WINDOW


def median_seconds(fn: Callable[[], object], runs: int) -> float:
    fn()  # warm-up: imports, plugin discovery
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=15)
    args = ap.parse_args()
    path = get_testdata_file("RG1_J2KR.dcm")
    decode_s = median_seconds(lambda: decode(dcmread(path)), args.runs)
    mimic_s = median_seconds(lambda: convert_dataset(dcmread(path), MIMIC), args.runs)
    window_s = median_seconds(lambda: convert_dataset(dcmread(path), WINDOW), args.runs)
    print(f"RG1_J2KR 1841x1955, median of {args.runs} runs")
    print(f"  bare decode           {decode_s * 1000:8.1f} ms")
    print(f"  full mimic conversion {mimic_s * 1000:8.1f} ms  ({mimic_s / decode_s:.3f}x)")
    print(f"  full window conversion{window_s * 1000:8.1f} ms  ({window_s / decode_s:.3f}x)")
    print(f"RESULT convert_over_decode={mimic_s / decode_s:.3f}")


if __name__ == "__main__":
    main()
