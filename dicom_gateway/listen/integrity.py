"""Is a received instance whole?  Checked before anything is acknowledged.

A C-STORE answered 0x0000 says "stored".  A file cut in half in transit, or a header
that declares 65535 x 65535 pixels over 16 bytes of data, parses as a header and would
fail only later, at conversion, after the sender was told it was safe.  These checks
read only the header and, for encapsulated pixel data, the item headers (seeking over
the fragments), so they cost little more than the header parse itself.

Memory stays bounded whatever a sender claims or sends.  A Deflated Explicit VR Little
Endian dataset of 1 MiB can inflate to 1 GiB, and pydicom inflates a deflated file whole
in memory; so :func:`readable` inflates it as a stream, in chunks, first only counting
(refused past the instance limit without writing anything), then into a temporary
Explicit VR Little Endian copy that the header parse and these checks read with deferred
values.  A dataset that is not deflated is measured by its received size.
"""

from __future__ import annotations

import contextlib
import os
import struct
import tempfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from pydicom.filebase import DicomFileLike
from pydicom.filereader import read_file_meta_info
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import UID

from dicom_gateway.listen.config import DEFAULT_MAX_INSTANCE_BYTES

ITEM = 0xFFFEE000
SEQUENCE_DELIMITER = 0xFFFEE0DD
UNDEFINED = 0xFFFFFFFF
DEFLATED = "1.2.840.10008.1.2.1.99"
EXPLICIT_LITTLE = UID("1.2.840.10008.1.2.1")
INFLATE_CHUNK = 1 << 20  # bytes of input read, and of output made, at a time


class InstanceTooLarge(ValueError):
    """The instance is, or inflates to, more than the limit (it is refused unread)."""


def _mib(n: int) -> str:
    return f"{n / 2**20:.0f} MiB"


def dataset_offset(path: Path) -> int:
    """Where the dataset starts in a Part 10 file: after the preamble, ``DICM`` and the
    File Meta Information, whose group length (always written by pynetdicom) says how long
    it is."""
    with path.open("rb") as fh:
        head = fh.read(144)
    if len(head) < 144 or head[128:132] != b"DICM":
        raise ValueError("no File Meta Information")
    group, elem, vr, size, length = struct.unpack("<HH2sHL", head[132:144])
    if (group, elem, vr, size) != (0x0002, 0x0000, b"UL", 4):
        raise ValueError("File Meta Information without its group length")
    return 144 + length


def inflate(fh: BinaryIO, limit: int, sink: Callable[[bytes], Any] | None = None) -> int:
    """Inflate the raw deflate stream at ``fh``'s position in chunks; return its size.

    Never holds more than :data:`INFLATE_CHUNK` of input or output at once; raises
    :class:`InstanceTooLarge` as soon as the output passes ``limit`` and ``ValueError``
    for a stream that ends early (``zlib.error`` for one that is not deflate at all).
    Bytes after the end of the stream (a padding byte) are ignored, as pydicom does.
    """
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    total = 0
    while not inflater.eof:
        data = inflater.unconsumed_tail or fh.read(INFLATE_CHUNK)
        out = inflater.decompress(data, INFLATE_CHUNK)
        if not data and not out:
            raise ValueError("the deflated data set ends before its deflate stream does")
        total += len(out)
        if total > limit:
            raise InstanceTooLarge(f"inflates to more than {_mib(limit)} "
                                   "(CXR_MAX_INSTANCE_MB)")
        if sink is not None:
            sink(out)
    return total


@contextlib.contextmanager
def readable(path: Path, transfer_syntax: str, limit: int) -> Iterator[Path]:
    """The file the header parse and the checks should read, for a received instance.

    ``path`` itself, unless the instance is deflated: then an inflated copy (Explicit VR
    Little Endian, the same File Meta otherwise) beside it, removed afterwards.  Raises
    :class:`InstanceTooLarge` for an instance over ``limit`` bytes once inflated.
    """
    if transfer_syntax != DEFLATED:
        size = os.path.getsize(path)
        if size > limit:
            raise InstanceTooLarge(f"{_mib(size)}, over the limit of {_mib(limit)} "
                                   "(CXR_MAX_INSTANCE_MB)")
        yield path
        return
    offset = dataset_offset(path)
    with path.open("rb") as fh:
        fh.seek(offset)
        inflate(fh, limit)  # counting only: a bomb costs CPU for at most `limit` bytes
    meta = read_file_meta_info(path)
    meta.TransferSyntaxUID = EXPLICIT_LITTLE
    fd, name = tempfile.mkstemp(dir=path.parent, prefix="inflated-", suffix=".dcm")
    copy = Path(name)
    try:
        with os.fdopen(fd, "wb") as out, path.open("rb") as fh:
            fp = DicomFileLike(out)
            fp.is_little_endian, fp.is_implicit_VR = True, False
            fp.write(b"\0" * 128 + b"DICM")
            write_file_meta_info(fp, meta, enforce_standard=True)
            fh.seek(offset)
            inflate(fh, limit, out.write)
        yield copy
    finally:
        copy.unlink(missing_ok=True)


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
        # Positions refer to the inflated stream, not the file: check an inflated copy.
        # (The listener passes such a copy already; a batch folder's file comes here.)
        from pydicom import dcmread

        with readable(path, DEFLATED, DEFAULT_MAX_INSTANCE_BYTES) as plain:
            return _pixel_reason(dcmread(plain, defer_size=1024), plain)
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
    if value_tell is not None and int(value_tell) + length > os.path.getsize(path):
        return "the file ends inside the pixel data"
    return None
