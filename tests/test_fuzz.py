"""Fuzzing (hypothesis): conversion, admission, the output parsers and SR building never
crash on odd input and stay within a memory bound; and well-formed input always works
(so an implementation that refuses everything fails here too).

No deadline per example: on a busy machine an example's wall-clock time says nothing
(pytest-timeout still ends a real hang).  The budget per target is the hypothesis profile's
(tests/conftest.py: 300 examples in the full run, ``FUZZ_EXAMPLES`` for a longer hunt,
fewer in the fast tier); failures hypothesis finds are kept in its local database and
replayed first.
"""

from __future__ import annotations

import io
import re
import tracemalloc
from collections import Counter
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st
from PIL import Image
from pydicom import Dataset, dcmread
from pydicom.dataset import FileMetaDataset
from pydicom.filereader import read_dataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from dicom_gateway.documents.sr import Algorithm, DraftReport, SRIdentity, build_sr
from dicom_gateway.imaging.conversion import (
    CONVERSIONS,
    MIMIC,
    ConversionError,
    convert_dataset,
    smart_resize,
)
from dicom_gateway.routing.admission import Candidate, admit, rejection_reason
from models.labels import CHEXPERT_LABELS
from models.parsing import ANSWER_STATUSES, OK, parse_output, parse_report
from tests.peers import sample_file

# A hang guard, not a speed bound: 300 traced SR builds take about three minutes on an
# idle two-core machine and more than twice that on a busy one (the default is 300 s).
pytestmark = pytest.mark.timeout(1500)

MEMORY_BOUND = 64 * 2**20  # bytes, per example (the inputs are at most 64 x 64 pixels)
# Health checks that judge speed or how many generated inputs a strategy discards depend
# on the machine and on the seed (pytest-randomly gives each run another): not on the code.
FUZZ = settings(deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much])


def bounded(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` and fail if it allocated more than the memory bound at its peak."""
    tracemalloc.start()
    try:
        return fn()
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert peak < MEMORY_BOUND, f"peak {peak / 2**20:.1f} MiB"


# -- pixel conversion ------------------------------------------------------------------

PHOTOMETRIC = st.sampled_from(["MONOCHROME1", "MONOCHROME2", "RGB", "YBR_FULL", "PALETTE COLOR",
                               "", "monochrome2", "MONOCHROME3"])
NUMBERS = st.one_of(st.integers(-70000, 70000),
                    st.floats(-1e9, 1e9, allow_nan=False).map(lambda v: f"{v:.6g}"),
                    st.sampled_from([0, -1, 1e-9, "1e30", "-0"]))


@st.composite
def radiographs(draw: st.DrawFn) -> Dataset:
    rows, cols = draw(st.integers(1, 64)), draw(st.integers(1, 64))
    bits = draw(st.sampled_from([1, 8, 12, 16, 32]))
    samples = draw(st.sampled_from([1, 1, 1, 3]))
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.Rows, ds.Columns, ds.SamplesPerPixel = rows, cols, samples
    ds.BitsAllocated = bits
    ds.BitsStored = draw(st.integers(1, bits))
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = draw(st.sampled_from([0, 1, 0, 2]))
    ds.PhotometricInterpretation = draw(PHOTOMETRIC)
    if samples == 3:
        ds.PlanarConfiguration = draw(st.sampled_from([0, 1]))
    if draw(st.booleans()):
        ds.NumberOfFrames = draw(st.integers(1, 3))
    expected = rows * cols * samples * int(ds.get("NumberOfFrames", 1)) * bits // 8
    size = draw(st.one_of(st.just(expected), st.integers(0, expected + 64)))
    ds.PixelData = draw(st.binary(min_size=size, max_size=size))
    ds["PixelData"].VR = "OB" if bits <= 8 else "OW"
    for keyword in ("RescaleSlope", "RescaleIntercept", "WindowCenter", "WindowWidth",
                    "PixelPaddingValue", "PixelPaddingRangeLimit"):
        if draw(st.booleans()):
            value = draw(NUMBERS)
            if keyword.startswith("PixelPadding"):
                value = int(draw(st.integers(-70000, 70000)))
            setattr(ds, keyword, value if keyword.startswith("PixelPadding") else str(value))
    if draw(st.booleans()):
        ds.VOILUTFunction = draw(st.sampled_from(["LINEAR", "LINEAR_EXACT", "SIGMOID", "CUBIC"]))
    if draw(st.booleans()):
        ds.PresentationLUTShape = draw(st.sampled_from(["IDENTITY", "INVERSE", "ODD"]))
    return ds


@FUZZ
@given(ds=radiographs(), conversion=st.sampled_from(CONVERSIONS))
def test_conversion_returns_an_image_or_says_why(ds: Dataset, conversion: str) -> None:
    def run() -> None:
        try:
            image = convert_dataset(ds, conversion)
        except ConversionError as exc:
            assert str(exc)
            return
        assert image.png.startswith(b"\x89PNG") and image.width % 28 == 0

    bounded(run)


@st.composite
def well_formed_radiographs(draw: st.DrawFn) -> tuple[Dataset, np.ndarray]:
    """A grey radiograph as a modality writes one (and its stored pixels): whole pixel
    data, at least two distinct values, any bit depth and sign, optional rescale and
    padding that leaves image."""
    rows, cols = draw(st.integers(2, 64)), draw(st.integers(2, 64))
    bits = draw(st.sampled_from([8, 16]))
    stored_bits = draw(st.integers(2, bits))
    signed = draw(st.booleans())
    lo, hi = (-(2 ** (stored_bits - 1)), 2 ** (stored_bits - 1) - 1) if signed else \
        (0, 2**stored_bits - 1)
    values = draw(st.lists(st.integers(lo, hi), min_size=rows * cols, max_size=rows * cols))
    values[0], values[-1] = lo, hi  # never blank
    dtype = {(8, False): np.uint8, (8, True): np.int8, (16, False): np.uint16,
             (16, True): np.int16}[(bits, signed)]
    pixels = np.array(values, dtype=dtype).reshape(rows, cols)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.Rows, ds.Columns, ds.SamplesPerPixel = rows, cols, 1
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits, stored_bits, stored_bits - 1
    ds.PixelRepresentation = int(signed)
    ds.PhotometricInterpretation = draw(st.sampled_from(["MONOCHROME1", "MONOCHROME2"]))
    ds.PixelData = pixels.tobytes()
    ds["PixelData"].VR = "OB" if bits == 8 else "OW"
    if draw(st.booleans()):
        ds.RescaleSlope = str(draw(st.sampled_from([1, 2, 0.5])))
        ds.RescaleIntercept = str(draw(st.integers(-1024, 1024)))
    if draw(st.booleans()):
        ds.PixelPaddingValue = hi  # the brightest value is padding; the darkest is image
    return ds, pixels


@FUZZ
@given(sample=well_formed_radiographs(), conversion=st.sampled_from(CONVERSIONS))
def test_a_well_formed_radiograph_always_converts(sample: tuple[Dataset, np.ndarray],
                                                  conversion: str) -> None:
    ds, pixels = sample
    image = bounded(lambda: convert_dataset(ds, conversion))  # a ConversionError fails
    grey = np.asarray(Image.open(io.BytesIO(image.png)))
    assert (image.height, image.width) == smart_resize(*pixels.shape) == grey.shape[:2]
    assert grey.ndim == 3 and (grey[..., 0] == grey[..., 1]).all() and \
        (grey[..., 1] == grey[..., 2]).all()  # grey, as RGB for the processor
    if conversion == MIMIC and "PixelPaddingValue" not in ds:
        # min-max then equalisation put the darkest and the brightest stored values at
        # 0 and 255, and resizing keeps two tones two tones
        assert grey.max() > grey.min()


# -- admission ---------------------------------------------------------------------------

TEXT = st.text(max_size=40)
WORD = re.compile(r"[^\W_]+")


HEADER_FIELDS = [  # (tag, VR), ascending, as admission reads them
    (0x00080060, b"CS"), (0x00080068, b"CS"), (0x00081030, b"LO"), (0x0008103E, b"LO"),
    (0x00180015, b"CS"), (0x00181030, b"LO"), (0x00185101, b"CS"), (0x00200013, b"IS"),
]


@st.composite
def headers(draw: st.DrawFn) -> Dataset:
    """A header as it comes off the network: any bytes in any of admission's fields."""
    import struct

    def el(tag: int, vr: bytes, value: bytes) -> bytes:
        value += b" " * (len(value) % 2)
        return struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, vr, len(value)) + value

    sop_class = draw(st.sampled_from([b"1.2.840.10008.5.1.4.1.1.1",
                                      b"1.2.840.10008.5.1.4.1.1.1.1", b"1.2.3", b""]))
    data = el(0x00080016, b"UI", sop_class) + el(0x00080018, b"UI",
                                                 generate_uid().encode())
    for tag, vr in HEADER_FIELDS:
        if draw(st.booleans()):
            data += el(tag, vr, draw(st.one_of(st.binary(max_size=24), TEXT.map(
                lambda t: t.encode("utf-8", "replace")))))
    if draw(st.booleans()):
        data += el(0x7FE00010, b"OB", b"\x00\x00")
    try:
        return read_dataset(io.BytesIO(data), is_implicit_VR=False, is_little_endian=True)
    except Exception:  # noqa: BLE001 - unreadable: the listener answers 0xC000 before this
        reject()


@FUZZ
@given(batch=st.lists(headers(), min_size=1, max_size=6))
def test_admission_always_decides_with_a_reason(batch: list[Dataset]) -> None:
    candidates = [Candidate.from_dataset(ds) for ds in batch]
    for c in candidates:
        reason = rejection_reason(c)
        assert reason is None or reason.strip()
    decision = admit(candidates)
    uids = {c.sop_instance_uid for c in candidates}
    assert set(decision.skipped) | ({decision.admitted} if decision.admitted else set()) == uids
    assert decision.admitted is not None or decision.study_reason


# -- the model output parsers -------------------------------------------------------------

PIECES = st.sampled_from(["<think>", "</think>", "<answer>", "</answer>", ", ", ",",
                          "INDICATION:", "FINDINGS:", "IMPRESSION:", "## Heading", "**X:**",
                          "\n", "- ", "1. ", "No Finding", "I'm sorry, I'm specialized in "
                          "medical chest X-ray analysis.", *CHEXPERT_LABELS])
OUTPUTS = st.one_of(st.text(max_size=400),
                    st.lists(st.one_of(PIECES, st.text(max_size=30)), max_size=40).map("".join))


@FUZZ
@given(text=OUTPUTS, tokens=st.one_of(st.none(), st.integers(0, 5000)))
def test_answer_parser_status_and_labels_are_consistent(text: str, tokens: int | None) -> None:
    p = parse_output(text, tokens, 2048)
    assert p.status in ANSWER_STATUSES
    assert set(p.labels) <= set(CHEXPERT_LABELS) and len(set(p.labels)) == len(p.labels)
    assert (p.status == OK) == bool(p.labels)
    assert not (set(p.near_misses.values()) & set(p.labels) and set(p.near_misses) &
                set(p.labels))


@FUZZ
@given(text=OUTPUTS, tokens=st.one_of(st.none(), st.integers(0, 5000)))
def test_report_parser_loses_no_word(text: str, tokens: int | None) -> None:
    r = parse_report(text, tokens, 4096)
    kept = " ".join([s.written for s in r.sections] + [i for s in r.sections for i in s.items])
    kept_words = Counter(WORD.findall(kept))
    for word, count in Counter(WORD.findall(r.body)).items():
        if not word.isdigit():  # list numbering ("1.") is dropped from bullets
            assert kept_words[word] >= count, (word, r.body, r.sections)


# -- SR building from odd source headers ---------------------------------------------------

ALGO = Algorithm("NV-Reason-CXR-3B", "hf:x@y", "NVIDIA", ("prompt=p",))
IDENTITY = SRIdentity.derive("seed", "1.2.3", "job-1", 1, "mock|m@r", "m", "v", "s")
ODD_TEXT = st.text(st.characters(blacklist_categories=["Cs"]), max_size=80)


@pytest.fixture(scope="module")
def rg1_header() -> Dataset:
    header = dcmread(sample_file("RG1_UNCR.dcm"), stop_before_pixels=True)
    # one build first: highdicom and pydicom fill their code dictionaries on first use,
    # which is not memory that an input can make grow
    build_sr(header, DraftReport(status="ok", labels=("Edema",), reasoning="r",
                                 algorithm=ALGO, is_mock=False), IDENTITY)
    return header


@FUZZ
@given(values=st.fixed_dictionaries({k: st.one_of(st.none(), ODD_TEXT) for k in (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
    "StudyID", "AccessionNumber", "ReferringPhysicianName", "SpecificCharacterSet",
    "StudyDescription")}), reasoning=ODD_TEXT, labels=st.lists(
    st.sampled_from(CHEXPERT_LABELS), unique=True, max_size=4),
    report=st.lists(st.tuples(st.sampled_from(["", "FINDINGS", "IMPRESSION", "Other"]),
                              st.lists(ODD_TEXT.filter(str.strip), max_size=3).map(tuple)),
                    max_size=4).map(tuple))
def test_sr_builds_from_odd_headers_or_says_why(rg1_header: Dataset, values: dict[str, Any],
                                               reasoning: str, labels: list[str],
                                               report: tuple[Any, ...], tmp_path_factory: Any
                                               ) -> None:
    import copy

    source = copy.deepcopy(rg1_header)
    for keyword, value in values.items():
        if value is None:
            if keyword in source:
                delattr(source, keyword)
        else:
            setattr(source, keyword, value)
    draft = DraftReport(status="ok" if labels else "no_labels", labels=tuple(labels),
                        reasoning=reasoning, algorithm=ALGO, is_mock=False,
                        report_sections=report)

    def run() -> Any:
        try:
            return build_sr(source, draft, IDENTITY)
        except ValueError as exc:  # highdicom's own validation names the attribute
            assert str(exc)
            return None

    sr = bounded(run)  # the build is what an input could make grow, not the file I/O
    if sr is not None:
        path = Path(tmp_path_factory.mktemp("sr")) / "sr.dcm"
        sr.save_as(path, enforce_file_format=True)
        back = dcmread(path)
        assert back.SOPInstanceUID == IDENTITY.sop_instance_uid
        assert back.SpecificCharacterSet == "ISO_IR 192"


NAME_PART = st.text(st.characters(whitelist_categories=["Lu", "Ll"]), min_size=1,
                    max_size=12)
DATES = st.dates(date(1900, 1, 1), date(2099, 12, 31)).map(lambda d: d.strftime("%Y%m%d"))


@FUZZ
@given(values=st.fixed_dictionaries({
    "PatientName": st.lists(NAME_PART, min_size=2, max_size=3).map("^".join),
    "PatientID": st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-", min_size=1, max_size=16),
    "PatientBirthDate": DATES, "StudyDate": DATES,
    "PatientSex": st.sampled_from(["M", "F", "O"]),
    "AccessionNumber": st.text("0123456789ABC", min_size=1, max_size=16),
    "StudyDescription": st.text(st.characters(blacklist_categories=["Cs", "Cc"]),
                                max_size=40)}),
    reasoning=ODD_TEXT, labels=st.lists(st.sampled_from(CHEXPERT_LABELS), unique=True,
                                        min_size=1, max_size=4))
def test_sr_always_builds_from_a_well_formed_header(rg1_header: Dataset, values: dict[str, Any],
                                                   reasoning: str, labels: list[str]) -> None:
    import copy

    source = copy.deepcopy(rg1_header)
    for keyword, value in values.items():
        setattr(source, keyword, value)
    draft = DraftReport(status="ok", labels=tuple(labels), reasoning=reasoning,
                        algorithm=ALGO, is_mock=False)
    sr = build_sr(source, draft, IDENTITY)  # a refusal fails (memory: the test above)
    assert sr.SOPInstanceUID == IDENTITY.sop_instance_uid
    assert str(sr.PatientID) == values["PatientID"]  # the report files under its patient
    assert str(sr.PatientName) == values["PatientName"]
    assert sr.StudyInstanceUID == source.StudyInstanceUID
