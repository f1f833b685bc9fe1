"""The Encapsulated PDF: the pages' layout as text, whole through Orthanc at any length.

A reader copies the structured report out of the PDF into their own, so its text must be
text (``pdftotext`` reads it back); and Orthanc's ``/instances/{id}/pdf`` drops a last
byte that is not CR or LF as DICOM's pad byte, so a PDF ending in ``%%EOF`` came back one
byte short at every even length.  Both are checked here with the real programs.
"""

from __future__ import annotations

import re
import subprocess
import urllib.request
from copy import deepcopy
from pathlib import Path
from typing import Any

import pytest
from pydicom import Dataset, dcmread
from pydicom.uid import generate_uid

from dicom_gateway.documents.layout import render_pages, render_pdf
from dicom_gateway.documents.marks import BANNER, MOCK_BANNER
from dicom_gateway.documents.page import build_pages
from dicom_gateway.documents.pdf import build_pdf
from dicom_gateway.documents.sr import DraftReport
from tests.peers import Orthanc, dicom_tool, require_tool
from tests.test_report_page import CRAFTED_REPORT, IDENTITY, THINK, model_input_png, result_for
from worker.pipeline.reporting import draft_from_result

LABELS = ("Pneumothorax", "Cardiomegaly")
IMPRESSION = ("Small right-sided pneumothorax.",
              "Small right pleural effusion with parenchymal opacity.", "Enlarged heart")
PAGE = re.compile(rb"/Type /Page\b(?!s)")


def draft(reasoning: str = "Careful review of the image. ", **extra: Any) -> DraftReport:
    return draft_from_result(result_for(THINK + f"<answer> {', '.join(LABELS)} </answer>",
                                        CRAFTED_REPORT, reasoning=reasoning, **extra), "c")


def document(ds: Dataset) -> bytes:
    """The PDF as stored: the value less its pad byte, by the recorded length."""
    data = bytes(ds.EncapsulatedDocument)
    assert len(data) % 2 == 0
    return data[:int(ds.EncapsulatedDocumentLength)]


def test_the_pdf_is_the_pages_written_as_text_and_ends_in_a_line_break() -> None:
    d = draft("Careful review of the image. " * 300)
    pdf = render_pdf(d, None, version=1, sr_uid="2.25.1")
    pages = render_pages(d, None, version=1, sr_uid="2.25.1")
    assert pdf.startswith(b"%PDF-") and pdf.endswith(b"%%EOF\n")
    assert len(PAGE.findall(pdf)) == len(pages) > 1  # the same page breaks
    assert b"/FontFile2" in pdf and b"Aileron" in pdf  # the pages' font, embedded
    assert b"/ToUnicode" in pdf  # so a reader's copy gives characters, not glyph ids
    assert b"/Subtype /Image" not in pdf  # no model input here: nothing is a picture


def test_a_pdf_of_odd_length_is_padded_with_a_nul_and_its_length_recorded(rg1: Path) -> None:
    source = dcmread(rg1, stop_before_pixels=True)
    seen = set()
    for n in range(40):
        d = draft("Careful review. " + "x" * n)
        ds = build_pdf(source, d, IDENTITY, build_pages(source, d, IDENTITY, None), None)
        assert document(ds).startswith(b"%PDF-") and document(ds).endswith(b"%%EOF\n")
        length = int(ds.EncapsulatedDocumentLength)
        pad = bytes(ds.EncapsulatedDocument)[length:]
        assert pad == (b"\0" if length % 2 else b"")
        seen.add(length % 2)
        if seen == {0, 1}:
            return
    pytest.fail("forty documents, all of one parity")


def _store(orthanc: Orthanc, path: Path) -> bytes:
    """C-STORE with dcmtk, then the document as Orthanc's /pdf serves it."""
    out = subprocess.run([dicom_tool("storescu"), "-aec", "ORTHANC", "127.0.0.1",
                          str(orthanc.dicom_port), str(path)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    uid = str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)
    found = orthanc.rest("POST", "/tools/lookup", uid.encode())
    assert isinstance(found, list) and len(found) == 1, found
    url = f"{orthanc.url}/instances/{found[0]['ID']}/pdf"
    with urllib.request.urlopen(url, timeout=60) as resp:
        assert resp.headers.get("Content-Type") == "application/pdf"
        return bytes(resp.read())


def _text(pdf: bytes, tmp_path: Path) -> str:
    path = tmp_path / "served.pdf"
    path.write_bytes(pdf)
    out = subprocess.run([require_tool("pdftotext"), str(path), "-"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return " ".join(out.stdout.split())


@pytest.mark.integration  # Orthanc, dcmtk and poppler as subprocesses
def test_orthanc_serves_the_pdf_whole_at_either_length_and_its_text_reads_back(
        rg1: Path, tmp_path: Path) -> None:
    source = dcmread(rg1, stop_before_pixels=True)
    png = model_input_png(rg1)
    by_parity: dict[int, Dataset] = {}
    for n in range(40):  # one draft longer by a character at a time, until both parities
        d = draft("Careful review. " + "x" * n, **({"status": "mock", "labels": [],
                                                   "is_mock": True} if n % 3 == 2 else {}))
        ds = build_pdf(source, d, IDENTITY, build_pages(source, d, IDENTITY, png), png)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        by_parity.setdefault(int(ds.EncapsulatedDocumentLength) % 2, ds)
        if len(by_parity) == 2:
            break
    assert set(by_parity) == {0, 1}
    orthanc = Orthanc(tmp_path)
    try:
        for parity, ds in sorted(by_parity.items()):
            path = tmp_path / f"pdf-{parity}.dcm"
            ds.save_as(path, enforce_file_format=True)
            served = _store(orthanc, path)
            assert served == document(ds), (parity, len(served), len(document(ds)))
            text = _text(served, tmp_path)
            assert text.count(BANNER) >= 2, text  # the top and foot of a page at least
            assert ("MOCK" in str(ds.SeriesDescription)) == (MOCK_BANNER in text)
            if MOCK_BANNER not in text:
                for label in LABELS:
                    assert label in text, (label, text)
            for item in IMPRESSION:
                assert item in text, (item, text)
        # the control: the same document without its last line break, at even length, is
        # what Orthanc cuts (the fault this layout avoids)
        odd = document(by_parity[1])
        bare = deepcopy(by_parity[1])
        bare.SOPInstanceUID = bare.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        bare.EncapsulatedDocument = odd[:-1]
        bare.EncapsulatedDocumentLength = len(odd) - 1
        path = tmp_path / "bare.dcm"
        bare.save_as(path, enforce_file_format=True)
        assert odd[:-1].endswith(b"%%EOF") and _store(orthanc, path) == odd[:-2]
    finally:
        orthanc.stop()
