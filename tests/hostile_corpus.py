"""A corpus of hostile DICOM inputs, generated here (no opaque blobs in the repository).

Each case is the dataset bytes a sender puts on the wire, the transfer syntax it
proposes, and what the gateway must make of it: a specific C-STORE failure status, or
an acknowledgement followed by a job that is skipped or fails with a named reason (or,
for inputs that are odd but whole, completes).
"""

from __future__ import annotations

import functools
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import (
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

from tests.dicom_factory import CR

REFUSED_C000 = "status 0xC000"
REFUSED_A900 = "status 0xA900"
REFUSED = "status 0xA900 or 0xC000"  # truncations: which one depends on where the cut falls
REFUSED_A700 = "status 0xA700"  # over the instance size limit (CXR_MAX_INSTANCE_MB)
LIMIT_MB = 32  # the CXR_MAX_INSTANCE_MB the corpus is sent under (the 24 MiB case fits)
STORED_FAILED = "job failed"
STORED_SKIPPED = "study skipped"
STORED_DONE = "job done"


@dataclass(frozen=True)
class HostileCase:
    name: str
    data: bytes  # the dataset as sent (no file meta)
    sop_instance_uid: str  # the command's Affected SOP Instance UID
    expect: str  # one of the outcomes above
    reason: str = ""  # a word the status log line or the job/skip reason must contain
    transfer_syntax: str = ExplicitVRLittleEndian
    sop_class_uid: str = CR


def base(rows: int = 64, cols: int = 64, seed: int = 0) -> Dataset:
    """A small, valid, frontal chest CR (12 bits in 16) with identifiable patient data."""
    rng = np.random.default_rng(seed)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = CR, generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientName, ds.PatientID = "Hostile^Harriet", "HOSTILE42"
    ds.Modality, ds.BodyPartExamined, ds.ViewPosition = "CR", "CHEST", "PA"
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = rng.integers(0, 4096, size=(rows, cols)).astype("<u2").tobytes()
    return ds


def encode(ds: Dataset, little: bool = True, implicit: bool = False) -> bytes:
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = little, implicit
    write_dataset(fp, ds)
    return bytes(fp.getvalue())


def element(group: int, elem: int, vr: bytes, value: bytes, length: int | None = None) -> bytes:
    """One explicit-VR little-endian element, with any length field we like."""
    n = len(value) if length is None else length
    if vr in (b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN", b"UC", b"UR", b"OD", b"OL", b"OV"):
        return struct.pack("<HH2sHL", group, elem, vr, 0, n) + value
    return struct.pack("<HH2sH", group, elem, vr, n) + value


def case(name: str, ds: Dataset, expect: str, reason: str = "",
         mutate: Callable[[bytes], bytes] | None = None, ts: str = ExplicitVRLittleEndian,
         sop_class: str = CR) -> HostileCase:
    data = encode(ds, little=ts != ExplicitVRBigEndian)
    if mutate is not None:
        data = mutate(data)
    return HostileCase(name, data, str(ds.SOPInstanceUID), expect, reason, ts, sop_class)


def _encapsulated(ds: Dataset, codestream: bytes, ts: str) -> Dataset:
    ds.file_meta.TransferSyntaxUID = ts
    ds.PixelData = encapsulate([codestream], has_bot=False)
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    return ds


def _j2k_header(width: int, height: int) -> bytes:
    """A JPEG 2000 codestream start (SOC, SIZ for one 16-bit component) and no more."""
    siz = struct.pack(">HHIIIIIIIIH", 41, 0, width, height, 0, 0, width, height, 0, 0, 1)
    return b"\xff\x4f\xff\x51" + siz + b"\x0f\x01\x01" + b"\xff\xd9"


def _jls_header(width: int, height: int) -> bytes:
    """A JPEG-LS stream start (SOI, SOF55 for one 16-bit component) and garbage."""
    sof = b"\xff\xf7" + struct.pack(">HBHHB", 11, 16, height, width, 1) + b"\x01\x11\x00"
    return b"\xff\xd8" + sof + bytes(range(64)) + b"\xff\xd9"


def nested_sequences(depth: int) -> bytes:
    """ContentSequence nested ``depth`` deep, all of undefined length, as raw bytes (a
    writer that recurses cannot produce a deep one)."""
    open_ = b"\x40\x00\x30\xa7SQ\x00\x00\xff\xff\xff\xff" + b"\xfe\xff\x00\xe0\xff\xff\xff\xff"
    close = b"\xfe\xff\x0d\xe0\x00\x00\x00\x00" + b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
    return open_ * depth + element(0x0008, 0x0104, b"LO", b"deep") + close * depth


@functools.lru_cache(maxsize=2)
def deflate_bomb(inflated: int = 2**30, seed: int = 7) -> HostileCase:
    """A frontal chest CR in Deflated Explicit VR Little Endian whose private OB element
    holds ``inflated`` zero bytes: about a thousandth of that on the wire (1 MiB for
    1 GiB), built chunk by chunk so that the test never holds the inflated bytes."""
    ds = base(seed=seed)
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    ds.add_new(0x00090010, "LO", "HOSTILE")
    marker = b"\xab\xcd" * 8
    ds.add_new(0x00091010, "OB", marker)
    plain = encode(ds)
    placeholder = element(0x0009, 0x1010, b"OB", marker)
    at = plain.index(placeholder)
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    step = 1 << 20
    assert inflated % step == 0
    zeros = bytes(step)
    parts = [deflater.compress(plain[:at] + element(0x0009, 0x1010, b"OB", b"",
                                                    length=inflated))]
    parts += [deflater.compress(zeros) for _ in range(inflated // step)]
    parts += [deflater.compress(plain[at + len(placeholder):]), deflater.flush()]
    return HostileCase(f"deflate bomb ({sum(map(len, parts)) // 1024} KiB inflating to "
                       f"{inflated // 2**20} MiB)", b"".join(parts), str(ds.SOPInstanceUID),
                       REFUSED_A700, "inflates to more than", DeflatedExplicitVRLittleEndian)


def deflate_dataset(ds: Dataset) -> bytes:
    """``ds`` as a sender puts it on the wire in Deflated Explicit VR Little Endian."""
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    return deflater.compress(encode(ds)) + deflater.flush()


PIXEL_TAG = b"\xe0\x7f\x10\x00"


def _offset(where: str, data: bytes) -> int:
    """A byte offset named by a number, "pixel data +/- n" or "end - n", in ``data``."""
    anchor, _, delta = where.rpartition(" ")
    if not anchor:
        return int(where)
    sign = 1 if anchor.endswith("+") else -1
    start = data.rindex(PIXEL_TAG) if anchor.startswith("pixel data") else len(data)
    return start + sign * int(delta)


def pixel_header(vr: bytes, length: int) -> Callable[[bytes], bytes]:
    """Replace the PixelData element's header (found in the bytes it is given) by one
    with this VR and length field; the value bytes stay."""
    def mutate(data: bytes) -> bytes:
        at = data.rindex(PIXEL_TAG)
        return data[:at] + element(0x7FE0, 0x0010, vr, b"", length=length) + data[at + 12:]
    return mutate


def corpus() -> list[HostileCase]:
    cases: list[HostileCase] = []
    # -- truncated in transit, at many offsets ------------------------------------------
    # Offsets are found in each case's own bytes: generated UIDs vary in length (about
    # one base dataset in thirty encodes two bytes shorter), so no offset carries over.
    for where in ("4", "9", "30", "77", "150", "pixel data - 3", "pixel data + 6",
                  "pixel data + 40", "pixel data + 4000", "end - 2"):
        ds = base(seed=len(cases))
        data = encode(ds)
        cut = _offset(where, data)
        cases.append(HostileCase(f"truncated at byte {where}", data[:cut],
                                 str(ds.SOPInstanceUID), REFUSED))
    # native pixel data shorter than Rows x Columns x samples x bits say
    ds = base()
    ds.Rows = ds.Columns = 65535
    ds.PixelData = b"\x00" * 16
    cases.append(case("65535 x 65535 over 16 bytes", ds, REFUSED_A900, "not whole"))
    ds = base()
    ds.PixelData = ds.PixelData[:4096]
    cases.append(case("half the pixels", ds, REFUSED_A900, "not whole"))
    ds = base()
    ds.PixelData = b""
    cases.append(case("empty pixel data", ds, REFUSED_A900, "not whole"))
    ds = base()
    ds.SamplesPerPixel = 3
    cases.append(case("three samples declared, one sent", ds, REFUSED_A900, "not whole"))
    ds = base()
    ds.BitsAllocated = 12
    cases.append(case("BitsAllocated 12", ds, REFUSED_A900, "not whole"))
    ds = base()
    ds.NumberOfFrames = 50
    cases.append(case("fifty frames declared, one sent", ds, REFUSED_A900, "not whole"))
    ds = base()
    del ds.Rows
    cases.append(case("no Rows", ds, REFUSED_A900, "missing or invalid"))

    # -- wrong VRs ------------------------------------------------------------------------
    def rows_as(vr: bytes, value: bytes) -> Callable[[bytes], bytes]:
        good = element(0x0028, 0x0010, b"US", struct.pack("<H", 64))
        return lambda data: data.replace(good, element(0x0028, 0x0010, vr, value), 1)

    cases.append(case("Rows as DS text", base(), REFUSED_A900, "not whole",
                      rows_as(b"DS", b"64abc ")))
    cases.append(case("Rows as FD", base(), STORED_FAILED, "cannot be interpreted",
                      rows_as(b"FD", struct.pack("<d", 64.0))))
    cases.append(case("Rows as OB of 3 bytes", base(), REFUSED_A900, "",
                      rows_as(b"OB", b"\x40\x00\x00\x00")))
    uid_vr = base()
    cases.append(case("StudyInstanceUID as US", uid_vr, REFUSED_A900, "not a valid UID",
                      lambda d, u=str(uid_vr.StudyInstanceUID): d.replace(
                          element(0x0020, 0x000D, b"UI", u.encode() + b"\x00" * (len(u) % 2)),
                          element(0x0020, 0x000D, b"US", b"\x01\x00"), 1)))
    ds = base()
    cases.append(case("PatientName as binary UN", ds, STORED_DONE, "",
                      lambda d: d.replace(element(0x0010, 0x0010, b"PN", b"Hostile^Harriet "),
                                          element(0x0010, 0x0010, b"UN", bytes(range(16))),
                                          1)))
    ds = base()
    ds.PhotometricInterpretation = "PALETTE COLOR"
    cases.append(case("palette colour radiograph", ds, STORED_FAILED,
                      "unsupported PhotometricInterpretation"))
    ds = base()
    ds.PixelRepresentation = 5
    cases.append(case("PixelRepresentation 5", ds, STORED_FAILED, "PixelRepresentation"))

    # -- absurd lengths -------------------------------------------------------------------
    def lengths(value: int, tag: tuple[int, int], vr: bytes, text: bytes
                ) -> Callable[[bytes], bytes]:
        good = element(*tag, vr, text)
        return lambda data: data.replace(good, element(*tag, vr, text, length=value), 1)

    name = (0x0010, 0x0010)
    for value in (0xFFF0, 0xFFFF):
        cases.append(case(f"PatientName length {value:#x}", base(), REFUSED_A900, "",
                          lengths(value, name, b"PN", b"Hostile^Harriet ")))
    cases.append(case("PixelData length 0xFFFFFFF0", base(), REFUSED_A900, "not whole",
                      pixel_header(b"OW", 0xFFFFFFF0)))
    cases.append(case("PixelData odd length", base(), REFUSED_A900, "pixel data",
                      pixel_header(b"OW", 8191)))

    # -- undefined lengths in odd places ---------------------------------------------------
    cases.append(case("PatientName of undefined length", base(), REFUSED_C000, "",
                      lambda d: d.replace(element(*name, b"PN", b"Hostile^Harriet "),
                                          element(*name, b"UN", b"", length=0xFFFFFFFF)
                                          + b"Hostile^Harriet ", 1)))
    cases.append(case("native PixelData of undefined length", base(), REFUSED, "",
                      pixel_header(b"OB", 0xFFFFFFFF)))

    # -- missing pixel data, wrong class ---------------------------------------------------
    ds = base()
    del ds.PixelData
    cases.append(case("no pixel data", ds, REFUSED_A900, "without pixel data"))
    ds = base()
    cases.append(case("SOP class differs from the command", ds, REFUSED_A900, "SOPClassUID",
                      sop_class=CTImageStorage))
    ds = base()
    ds.Modality = "MR"
    cases.append(case("MR modality in a CR object", ds, STORED_SKIPPED, "not a radiograph"))
    ds = base()
    ds.BodyPartExamined = "HAND"
    cases.append(case("hand radiograph", ds, STORED_SKIPPED, "not chest"))
    ds = base()
    ds.ViewPosition = "LL"
    cases.append(case("lateral chest", ds, STORED_SKIPPED, "lateral view"))

    # -- corrupt compressed streams, decompression bombs ----------------------------------
    j2k = _encapsulated(base(), b"\xff\x4f\xff\x51" + bytes(200), JPEG2000Lossless)
    cases.append(case("JPEG 2000 with a zeroed SIZ", j2k, STORED_FAILED, "is 0x0",
                      ts=JPEG2000Lossless))
    j2k = _encapsulated(base(), _j2k_header(64, 64) + bytes(range(256)), JPEG2000Lossless)
    cases.append(case("JPEG 2000 with garbage after SIZ", j2k, STORED_FAILED, "corrupt",
                      ts=JPEG2000Lossless))
    jls = _encapsulated(base(), _jls_header(64, 64), JPEGLSLossless)
    cases.append(case("JPEG-LS without a scan", jls, STORED_FAILED, "blank",
                      ts=JPEGLSLossless))
    rle = _encapsulated(base(), struct.pack("<16L", 1, 64, *([0] * 14)) + b"\x7f" * 40,
                        RLELossless)
    cases.append(case("corrupt RLE", rle, STORED_FAILED, "decode", ts=RLELossless))
    bomb = _encapsulated(base(), _j2k_header(60000, 60000), JPEG2000Lossless)
    cases.append(case("JPEG 2000 bomb under a small header", bomb, STORED_FAILED,
                      "60000x60000", ts=JPEG2000Lossless))
    big = base()
    big.Rows = big.Columns = 60000
    big = _encapsulated(big, _j2k_header(60000, 60000), JPEG2000Lossless)
    cases.append(case("JPEG 2000 bomb with a matching header", big, STORED_FAILED,
                      "decompression guard", ts=JPEG2000Lossless))
    lsbomb = _encapsulated(base(), _jls_header(40000, 40000), JPEGLSLossless)
    cases.append(case("JPEG-LS bomb under a small header", lsbomb, STORED_FAILED,
                      "40000x40000", ts=JPEGLSLossless))
    def broken_items(name: str, reason: str, cut: Callable[[bytes, int], bytes]) -> None:
        items = _encapsulated(base(), b"\xff\x4f" + bytes(100), JPEG2000Lossless)
        enc = encode(items)
        cases.append(HostileCase(name, cut(enc, enc.rindex(PIXEL_TAG)),
                                 str(items.SOPInstanceUID), REFUSED_C000, reason,
                                 JPEG2000Lossless))

    broken_items("encapsulated without sequence delimiter", "could be read",
                 lambda enc, _at: enc[:-8])
    # the first fragment's item length (after the 12-byte element header and the empty
    # offset table item) made larger than the file
    broken_items("fragment longer than the file", "longer than the rest",
                 lambda enc, at: enc[:at + 12 + 8 + 4] + struct.pack("<L", 0x7FFFFFF0)
                 + enc[at + 12 + 8 + 8:])
    broken_items("garbage where an item should be", "unexpected tag",
                 lambda enc, at: enc[:at + 12 + 8] + b"\x01\x02\x03\x04" + enc[at + 24:])
    no_frags = base()
    no_frags.file_meta.TransferSyntaxUID = JPEG2000Lossless
    no_frags.PixelData = b"\xfe\xff\x00\xe0\x00\x00\x00\x00\xfe\xff\xdd\xe0\x00\x00\x00\x00"
    no_frags["PixelData"].VR = "OB"
    no_frags["PixelData"].is_undefined_length = True
    cases.append(case("encapsulated with no fragments", no_frags, REFUSED_C000, "no fragments",
                      ts=JPEG2000Lossless))
    deflated = base()
    cases.append(HostileCase("garbage deflate stream", b"\x78\x9c" + bytes(range(200)),
                             str(deflated.SOPInstanceUID), REFUSED_C000, "",
                             DeflatedExplicitVRLittleEndian))
    good_deflate = base()
    raw = zlib.compressobj(9, zlib.DEFLATED, -15)
    body = raw.compress(encode(good_deflate)) + raw.flush()
    cases.append(HostileCase("valid deflate, truncated", body[: len(body) // 2],
                             str(good_deflate.SOPInstanceUID), REFUSED_C000, "",
                             DeflatedExplicitVRLittleEndian))
    # inflated as a stream and refused at the limit, never held whole
    cases.append(deflate_bomb())
    ok = base(seed=5)
    ok.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    cases.append(HostileCase("a valid deflated radiograph", deflate_dataset(ok),
                             str(ok.SOPInstanceUID), STORED_DONE, "",
                             DeflatedExplicitVRLittleEndian))
    short = base(seed=6)
    short.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    short.PixelData = short.PixelData[:1024]
    cases.append(HostileCase("deflated, half the pixels", deflate_dataset(short),
                             str(short.SOPInstanceUID), REFUSED_A900, "not whole",
                             DeflatedExplicitVRLittleEndian))

    # -- crafted UIDs -----------------------------------------------------------------------
    for uid, what in (("../../etc", "StudyInstanceUID"), ("1.2.3/../../x", "StudyInstanceUID"),
                      ("1.2.3\\..\\x", "StudyInstanceUID"), ("1." + "9" * 70, "StudyInstanceUID"),
                      ("1.2.03.4", "StudyInstanceUID")):
        ds = base()
        ds.StudyInstanceUID = uid
        cases.append(case(f"StudyInstanceUID {uid[:20]!r}", ds, REFUSED_A900, what))
    ds = base()
    ds.SeriesInstanceUID = "1.2.3\x00/etc/passwd"
    cases.append(case("SeriesInstanceUID with a NUL", ds, REFUSED_A900, "SeriesInstanceUID"))
    ds = base()
    ds.SOPInstanceUID = "../../../tmp/owned"
    cases.append(case("SOPInstanceUID path", ds, REFUSED_A900, "SOPInstanceUID"))

    # -- big, deep and odd ----------------------------------------------------------------
    ds = base()
    ds.add_new(0x00090010, "LO", "HOSTILE")
    ds.add_new(0x00091010, "OB", bytes(24 * 2**20))
    cases.append(case("24 MiB private element", ds, STORED_DONE))
    ds = base()
    ds.add_new(0x00090010, "LO", "HOSTILE")
    ds.add_new(0x00091010, "OB", bytes((LIMIT_MB + 8) * 2**20))
    cases.append(case(f"{LIMIT_MB + 8} MiB instance over a {LIMIT_MB} MiB limit", ds,
                      REFUSED_A700, "over the limit"))
    for depth, expect in ((40, STORED_DONE), (3000, REFUSED_C000)):
        cases.append(case(f"sequences {depth} deep", base(), expect, mutate=lambda d, n=depth:
                          d[:d.rindex(PIXEL_TAG)] + nested_sequences(n)
                          + d[d.rindex(PIXEL_TAG):]))
    for charset, value in (("ISO_IR 999", b"Fran\xe7ois"), ("ISO_IR 192", b"\xff\xfe\xfd"),
                           ("ISO 2022 IR 87", b"\x1b$B\x99\x99\x1b(B"),
                           ("GB18030", b"\x81\x30\x81\x30\xff")):
        ds = base()
        ds.SpecificCharacterSet = charset
        cases.append(case(f"charset {charset} with bad bytes", ds, STORED_DONE,
                          mutate=lambda d, v=value: d.replace(
                              element(*name, b"PN", b"Hostile^Harriet "),
                              element(*name, b"PN", v + b" " * (len(v) % 2)), 1)))

    # -- big endian, implicit, and a baseline that must simply work ----------------------
    ds = base()
    ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
    arr = np.frombuffer(ds.PixelData, "<u2")
    ds.PixelData = arr.astype(">u2").tobytes()
    cases.append(case("explicit big endian", ds, STORED_DONE, ts=ExplicitVRBigEndian))
    cases.append(case("a valid radiograph", base(seed=99), STORED_DONE))
    return cases
