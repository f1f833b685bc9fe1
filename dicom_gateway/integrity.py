"""Is a received instance whole?  Checked before anything is acknowledged.

A C-STORE answered 0x0000 says "stored".  A file cut in half in transit, or a header
that declares 65535 x 65535 pixels over 16 bytes of data, parses as a header and would
fail only later, at conversion, after the sender was told it was safe.  These checks
read only the header and, for encapsulated pixel data, the item headers (seeking over
the fragments), so they cost little more than the header parse itself.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ITEM = 0xFFFEE000
SEQUENCE_DELIMITER = 0xFFFEE0DD
UNDEFINED = 0xFFFFFFFF
DEFLATED = "1.2.840.10008.1.2.1.99"


def _int(ds: Any, keyword: str, default: int | None = None) -> int | None:
    value = ds.get(keyword, default)
    try:
        return int(value) if value not in (None, "") else default
    except (TypeError, ValueError):
        return None


def expected_native_length(ds: Any) -> int | None:
    """Bytes that Rows x Columns x samples x bits x frames make, or None if undeclared."""
    rows, cols = _int(ds, "Rows"), _int(ds, "Columns")
    bits, samples = _int(ds, "BitsAllocated"), _int(ds, "SamplesPerPixel", 1)
    frames = _int(ds, "NumberOfFrames", 1) or 1
    if not rows or not cols or not bits or not samples or frames < 1:
        return None
    if str(ds.get("PhotometricInterpretation", "")).upper() == "YBR_FULL_422":
        samples = 2  # two of every three samples are shared by pixel pairs (PS3.3 C.7.6.3.1.2)
    return (rows * cols * samples * frames * bits + 7) // 8


def encapsulated_problem(path: Path, offset: int, little_endian: bool = True) -> str | None:
    """Walk the item headers of encapsulated pixel data starting at ``offset``.

    Expects the Basic Offset Table item, at least one fragment, and the sequence
    delimiter, every item inside the file.
    """
    fmt = "<HHL" if little_endian else ">HHL"
    size = os.path.getsize(path)
    fragments = 0
    with path.open("rb") as fh:
        fh.seek(offset)
        pos = offset
        while True:
            head = fh.read(8)
            if len(head) < 8:
                return "encapsulated pixel data ends before its sequence delimiter"
            group, elem, length = struct.unpack(fmt, head)
            tag = group << 16 | elem
            if tag == SEQUENCE_DELIMITER:
                break
            if tag != ITEM:
                return f"encapsulated pixel data: unexpected tag {tag:08X} at byte {pos}"
            if length == UNDEFINED:
                return f"encapsulated pixel data: item of undefined length at byte {pos}"
            pos += 8 + length
            if pos > size:
                return (f"encapsulated pixel data: item at byte {pos - 8 - length} is longer "
                        "than the rest of the file")
            fragments += 1
            fh.seek(pos)
    if fragments < 2:  # the first item is the Basic Offset Table
        return "encapsulated pixel data has no fragments"
    return None


@dataclass(frozen=True)
class PixelProblem:
    """Why pixel data is not whole; ``parses`` says whether its structure could be read
    (a short value: the data set does not match its IOD) or not (cannot understand)."""

    reason: str
    parses: bool


def pixel_data_problem(ds: Any, path: Path) -> PixelProblem | None:
    """Why the pixel data of ``ds`` (read from ``path`` with deferred values) is not whole.

    None when it is whole, or when there is no pixel data to check (an SR, say).
    """
    reason = _pixel_reason(ds, path)
    if reason is None:
        return None
    return PixelProblem(reason, parses=not reason.startswith("encapsulated"))


def _pixel_reason(ds: Any, path: Path) -> str | None:
    raw = ds.get_item("PixelData", keep_deferred=True)
    if raw is None:
        return None
    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if ts == DEFLATED:
        # Positions refer to the inflated stream, not the file: read it whole (deflate
        # is rare and used for small objects) and measure the value itself.
        from pydicom import dcmread

        ds = dcmread(path)
        raw = ds.get_item("PixelData")
        if raw is None:
            return None
    length = getattr(raw, "length", None)
    value_tell = getattr(raw, "value_tell", None)
    if length is None:  # already read (small): its length is its value's
        value = raw.value
        length = len(value) if value is not None else 0
    encapsulated = length == UNDEFINED or bool(ts is not None and ts.is_encapsulated)
    if encapsulated:
        if length != UNDEFINED:
            return "encapsulated transfer syntax but pixel data of defined length"
        if value_tell is None:
            return None  # already parsed in full by the reader
        return encapsulated_problem(path, int(value_tell),
                                    little_endian=bool(ts is None or ts.is_little_endian))
    expected = expected_native_length(ds)
    if expected is None:
        return "Rows, Columns, BitsAllocated or SamplesPerPixel missing or invalid"
    if length not in (expected, expected + 1):  # + 1: padding of an odd length
        return f"native pixel data holds {length} bytes; the header declares {expected}"
    if ts != DEFLATED and value_tell is not None and \
            int(value_tell) + length > os.path.getsize(path):
        return "the file ends inside the pixel data"
    return None
