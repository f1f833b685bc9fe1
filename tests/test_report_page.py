"""Issue 24: the rendered report page beside the SR, findings by the template's
sub-headings, and a refusal said once.

The page is checked as a reader meets it: through a real Orthanc (its own renderer,
``/instances/{id}/preview``), read back by OCR (Debian's ``tesseract-ocr``), and verified
by dicom3tools' ``dciodvfy``; the findings are read back from the SR's own items.
"""

from __future__ import annotations

import io
import re
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from highdicom.sr.utils import find_content_items
from PIL import Image
from pydicom import Dataset, dcmread

from dicom_gateway.documents import codes as sr_codes
from dicom_gateway.documents.layout import MAX_PAGES, render_pages
from dicom_gateway.documents.marks import BANNER, MOCK_BANNER
from dicom_gateway.documents.page import build_pages
from dicom_gateway.documents.pdf import ENCAPSULATED_PDF, build_pdf
from dicom_gateway.documents.series import Kind, series_number
from dicom_gateway.documents.sr import SRIdentity, build_sr
from dicom_gateway.transfer.destinations import parse_destinations
from models.parsing import TEMPLATE_REGIONS, parse_output, parse_report
from tests.peers import Orthanc, backend_env, dciodvfy_errors, require_tool
from tests.test_end_to_end import assert_stored, db_for, wait_job
from tests.vllm_standin import REFUSAL
from worker.pipeline.reporting import draft_from_result
from worker.store.db import Delivery

SC_IMAGE = "1.2.840.10008.5.1.4.1.1.7"
SR_3D = "1.2.840.10008.5.1.4.1.1.88.34"
IDENTITY = SRIdentity.derive("seed-a", "1.2.3", "job-1", 1, "openai|m@r",
                             "CXR Reason Gateway", "cxr-reason-gateway 0.1.0", "Test site")
THINK = "<think> I look at the devices, the lungs, the heart and the bones. </think>\n"

# Every sub-heading of the paper's template (section 2.5), the lungs' finding broken
# across two lines as the paper's own example breaks it, and one sub-heading the
# template does not name.
CRAFTED_REPORT = (
    "<think> I write the report. </think>\n"
    "INDICATION: Not provided.\nCOMPARISON: None.\nTECHNIQUE: PA view of the chest.\n"
    "FINDINGS: Medical devices: Chest tube at right lung base. Central airways: Trachea and "
    "main bronchi patent.\n"
    "Lungs and pleural space: Small right pneumothorax; small right pleural effusion; "
    "parenchymal opacity in right lung;\n"
    "left lung clear. Mediastinum and hila: Mediastinum normal; hila normal; no adenopathy. "
    "Heart: Enlarged heart.\n"
    "Upper abdomen and diaphragm: No free subdiaphragmatic air; diaphragm normal. Bones and "
    "soft tissues: Normal.\nSoft tissues of the neck: Unremarkable.\n"
    "IMPRESSION:\n  \u2022 Small right-sided pneumothorax.\n"
    "  \u2022 Small right pleural effusion with parenchymal opacity.\n  \u2022 Enlarged heart\n"
)
EXPECTED_FINDINGS = [
    "Medical devices: Chest tube at right lung base.",
    "Central airways: Trachea and main bronchi patent.",
    "Lungs and pleural space: Small right pneumothorax; small right pleural effusion; "
    "parenchymal opacity in right lung; left lung clear.",
    "Mediastinum and hila: Mediastinum normal; hila normal; no adenopathy.",
    "Heart: Enlarged heart.",
    "Upper abdomen and diaphragm: No free subdiaphragmatic air; diaphragm normal.",
    "Bones and soft tissues: Normal.",
    "Soft tissues of the neck: Unremarkable.",
]


def result_for(findings: str, report: str = "", **extra: Any) -> dict[str, Any]:
    """A stored result as ``worker.pipeline.inference.result_payload`` writes it."""
    parsed = parse_output(findings)
    rep = parse_report(report) if report else None
    out: dict[str, Any] = {
        "model_id": "nvidia/NV-Reason-CXR-3B", "model_revision": "abc123",
        "backend": "openai", "prompt": "Find abnormalities and support devices.",
        "status": parsed.status, "labels": list(parsed.labels),
        "near_misses": parsed.near_misses, "unknown_labels": list(parsed.unknown),
        "notes": list(parsed.notes), "findings_text": findings, "answer": parsed.answer,
        "reasoning": parsed.reasoning, "report_text": report,
        "report_reasoning": rep.reasoning if rep else "",
        "report_truncated": bool(rep and rep.truncated),
        "report_sections": [{"heading": s.heading, "known": s.known, "items": list(s.items)}
                            for s in rep.sections] if rep else [],
        "is_mock": False,
    }
    out.update(extra)
    return out


def texts(sr: Dataset, code: Any = None) -> list[str]:
    return [i.TextValue for i in find_content_items(sr, value_type="TEXT", recursive=True)
            if code is None or i.ConceptNameCodeSequence[0].CodeValue == code.value]


def model_input_png(rg1: Path) -> bytes:
    ds = dcmread(rg1)
    a = ds.pixel_array.astype(float)
    a = 255 * (a.max() - a) / (a.max() - a.min())  # MONOCHROME1: inverted
    img = Image.fromarray(a.astype("uint8"))
    img.thumbnail((476, 476))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def processing(ds: Dataset) -> list[tuple[str, str, list[str]]]:
    """The processing equipment a document names: who, which model, which versions."""
    return [(str(e.Manufacturer), str(e.ManufacturerModelName), list(e.SoftwareVersions))
            for e in ds.ContributingEquipmentSequence
            if e.PurposeOfReferenceCodeSequence[0].CodeMeaning == "Processing Equipment"]


def squash(text: str) -> str:
    """Letters and digits only, lower case, with OCR's usual sans-serif confusion folded
    (a capital I reads as a small l: "AI" comes back "Al"), on both sides of a compare."""
    return re.sub(r"[^a-z0-9]", "", text.lower()).replace("l", "i")


def ocr(png: bytes, tmp_path: Path, name: str = "page") -> str:
    path = tmp_path / f"{name}.png"
    path.write_bytes(png)
    out = subprocess.run([require_tool("tesseract"), str(path), "stdout"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout


def png_of(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


# -- fast tier: parsing, the SR's items, destinations, the pages' header ------------------

def test_crafted_report_reads_back_from_the_sr_one_item_per_sub_heading(rg1: Path) -> None:
    result = result_for(THINK + "<answer> Pneumothorax, Pleural Effusion </answer>",
                        CRAFTED_REPORT)
    sr = build_sr(dcmread(rg1, stop_before_pixels=True), draft_from_result(result, "c"),
                  IDENTITY)
    assert texts(sr, sr_codes.FINDING) == EXPECTED_FINDINGS
    # every sub-heading of the template once, the unknown one kept as its own item
    names = [t.split(":")[0] for t in texts(sr, sr_codes.FINDING)]
    assert names == [*TEMPLATE_REGIONS, "Soft tissues of the neck"]
    # the report's text still appears exactly once outside the verbatim copy
    for sentence in ("left lung clear.", "Enlarged heart.", "Unremarkable."):
        outside = [t for t in texts(sr) if sentence in t and t != CRAFTED_REPORT]
        assert len(outside) == 1, (sentence, outside)
    assert texts(sr, sr_codes.REPORT_TEXT) == [CRAFTED_REPORT]


def test_findings_without_sub_headings_keep_their_lines() -> None:
    (sec,) = [s for s in parse_report("FINDINGS:\nThe lungs are clear.\nNo effusion.\n"
                                      ).sections if s.heading == "FINDINGS"]
    assert sec.items == ("The lungs are clear.", "No effusion.")
    (sec,) = parse_report("FINDINGS:\n- **Lungs:** clear\n- no effusion\n- Heart: normal\n"
                          ).sections
    assert sec.items == ("Lungs: clear; no effusion", "Heart: normal")


@pytest.mark.parametrize("reply", [REFUSAL, f"<answer>{REFUSAL}</answer>",
                                   THINK + "<answer> I'm sorry, I'm specialized in medical "
                                   "chest X-ray analysis. </answer>"])
def test_a_refusal_is_stated_once_and_lists_no_unknown_items(rg1: Path, reply: str) -> None:
    parsed = parse_output(reply)
    assert parsed.status == "refused"
    assert parsed.unknown == () and parsed.near_misses == {}
    # also a result stored before this fix, with the refusal's words as unknown items
    for result in (result_for(reply), result_for(reply, unknown_labels=[
            "I'm sorry", "I'm specialized in medical chest X-ray analysis."])):
        draft = draft_from_result(result, "c")
        assert draft.notes == ()
        sr = build_sr(dcmread(rg1, stop_before_pixels=True), draft, IDENTITY)
        assert [t for t in texts(sr) if "declined" in t] == [draft.status_sentence]
        assert not [t for t in texts(sr) if "outside the 14" in t]


def test_destination_suffixes_combine_and_keep_their_names() -> None:
    cases = {
        "P@h:104": ("3d", "sr", "P@h:104"),
        "P@h:104/comprehensive": ("comprehensive", "sr", "P@h:104/comprehensive"),
        "P@h:104/sr+page": ("3d", "sr+page", "P@h:104/sr+page"),
        "P@h:104/page": ("3d", "page", "P@h:104/page"),
        "P@h:104/page/comprehensive": ("comprehensive", "page", "P@h:104/comprehensive/page"),
        "P@h:104/comprehensive/sr+page": ("comprehensive", "sr+page",
                                          "P@h:104/comprehensive/sr+page"),
        "reply:104/sr+page": ("3d", "sr+page", "reply:104/sr+page"),
        "https://pacs/dicom-web#sr+page": ("3d", "sr+page", "https://pacs/dicom-web#sr+page"),
        "P@h:104/pdf+sr": ("3d", "sr+pdf", "P@h:104/sr+pdf"),
        "P@h:104/page+pdf+sr/comprehensive": ("comprehensive", "sr+page+pdf",
                                              "P@h:104/comprehensive/sr+page+pdf"),
        "https://pacs/dicom-web#pdf": ("3d", "pdf", "https://pacs/dicom-web#pdf"),
    }
    for text, (cls, sends, name) in cases.items():
        (d,) = parse_destinations(text)
        assert (d.sr_class, d.sends, str(d)) == (cls, sends, name), text
        assert parse_destinations(str(d)) == (d,)
        assert (d.wants_sr, d.wants_page, d.wants_pdf) == (
            "sr" in sends, "page" in sends, "pdf" in sends)
    assert parse_destinations("reply:104/sr+page")[0].resolved("ORTHANC", "1.2.3.4:5") \
        .sends == "sr+page"
    for bad in ("P@h:104/pages", "P@h:104/page/page", "P@h:104/sr+sr",
                "https://pacs/dicom-web#pdfs"):
        with pytest.raises(ValueError, match="P@h:104|pacs"):
            parse_destinations(bad)


def test_pages_are_their_own_series_in_the_study_with_the_srs_marks(rg1: Path) -> None:
    source = dcmread(rg1, stop_before_pixels=True)
    result = result_for(THINK + "<answer> Pneumothorax, Cardiomegaly </answer>",
                        CRAFTED_REPORT, reasoning="A long trace. " * 900)
    draft = draft_from_result(result, "c")
    sr = build_sr(source, draft, IDENTITY)
    pages = build_pages(source, draft, IDENTITY, model_input_png(rg1))
    assert len(pages) > 1  # the reasoning continues on further pages
    for n, page in enumerate(pages, 1):
        assert page.SOPClassUID == SC_IMAGE
        assert page.StudyInstanceUID == source.StudyInstanceUID == sr.StudyInstanceUID
        assert page.SeriesInstanceUID not in (sr.SeriesInstanceUID, source.SeriesInstanceUID)
        assert page.SeriesNumber == series_number(Kind.PAGE) != series_number(Kind.SR)
        assert "RESEARCH ONLY" in page.SeriesDescription
        assert "RESEARCH ONLY" in page.ImageComments and f"Page {n} of" in page.ImageComments
        assert page.ClinicalTrialSeriesID == sr.ClinicalTrialSeriesID
        assert page.ClinicalTrialSeriesDescription == sr.ClinicalTrialSeriesDescription
        assert page.SourceImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
        # identifiers only as the SR carries them
        for kw in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex",
                   "AccessionNumber", "StudyID", "StudyDate"):
            assert str(page.get(kw, "")) == str(sr.get(kw, "")), kw
        # the algorithm's identity as the SR's contributing equipment has it
        assert processing(page) == processing(sr)
    assert len({p.SOPInstanceUID for p in pages}) == len(pages)
    # idempotent per job version; a new version: new pages in the same series
    again = build_pages(source, draft, IDENTITY, model_input_png(rg1))
    assert [p.SOPInstanceUID for p in again] == [p.SOPInstanceUID for p in pages]
    v2 = SRIdentity.derive("seed-a", "1.2.3", "job-1", 2, "openai|m@r", "CXR Reason Gateway",
                           "cxr-reason-gateway 0.1.0", "Test site")
    newer = build_pages(source, draft, v2, model_input_png(rg1), supersedes=1)
    assert newer[0].SeriesInstanceUID == pages[0].SeriesInstanceUID
    assert not {p.SOPInstanceUID for p in newer} & {p.SOPInstanceUID for p in pages}
    assert newer[0].InstanceNumber > pages[-1].InstanceNumber
    other = SRIdentity.derive("seed-b", "1.2.3", "job-1", 1, "openai|m@r",
                              "CXR Reason Gateway", "cxr-reason-gateway 0.1.0", "Test site")
    assert not {p.SOPInstanceUID for p in build_pages(source, draft, other, None)} & \
        {p.SOPInstanceUID for p in pages}


def test_mock_pages_say_mock_in_the_header(rg1: Path) -> None:
    source = dcmread(rg1, stop_before_pixels=True)
    result = result_for(THINK + "<answer> Edema </answer>", status="mock", labels=[],
                        is_mock=True)
    (page,) = build_pages(source, draft_from_result(result, "c"), IDENTITY, None)
    assert page.SeriesDescription.startswith("MOCK")
    assert page.ImageComments.startswith("MOCK BACKEND")


# -- integration: OCR, dciodvfy, Orthanc ------------------------------------------------

@pytest.mark.integration  # tesseract and dciodvfy as subprocesses
def test_pages_read_by_ocr_and_dciodvfy(rg1: Path, tmp_path: Path) -> None:
    source = dcmread(rg1, stop_before_pixels=True)
    png = model_input_png(rg1)
    cases = {
        "ok": result_for(THINK + "<answer> Pneumothorax, Cardiomegaly </answer>",
                         CRAFTED_REPORT, reasoning="Careful review of the image. " * 500),
        "refused": result_for(f"<answer>{REFUSAL}</answer>", unknown_labels=["I'm sorry"]),
        "mock": result_for(THINK + "<answer> Edema </answer>", status="mock", labels=[],
                           is_mock=True),
    }
    for case, result in cases.items():
        draft = draft_from_result(result, "c")
        pages = build_pages(source, draft, IDENTITY, png)
        read = []
        for n, page in enumerate(pages, 1):
            path = tmp_path / f"{case}-{n}.dcm"
            page.save_as(path, enforce_file_format=True)
            assert dciodvfy_errors(path, iod="SCImage") == [], (case, n)
            text = ocr(png_of(Image.fromarray(dcmread(path).pixel_array)), tmp_path, case)
            assert squash(text).count(squash(BANNER)) >= 2, (case, n, text)  # top and foot
            if draft.is_mock:
                assert squash(MOCK_BANNER) in squash(text), (case, n, text)
            assert squash(draft.algorithm.name) in squash(text), (case, n)
            read.append(text)
        pdf = build_pdf(source, draft, IDENTITY, pages, png)
        pdf_path = tmp_path / f"{case}.pdf.dcm"
        pdf.save_as(pdf_path, enforce_file_format=True)
        assert dciodvfy_errors(pdf_path, iod="EncapsulatedPDF") == [], case
        assert dcmread(pdf_path).EncapsulatedDocument.startswith(b"%PDF")
        assert pdf.StudyInstanceUID == pages[0].StudyInstanceUID
        assert pdf.SeriesInstanceUID != pages[0].SeriesInstanceUID
        assert ("MOCK" in pdf.SeriesDescription) == draft.is_mock
        assert "RESEARCH ONLY" in pdf.SeriesDescription
        whole = squash(" ".join(read))
        if case == "ok":
            assert len(pages) > 1
            assert squash("Lungs and pleural space") in whole
            assert squash("left lung clear") in whole
            assert squash("Soft tissues of the neck") in whole
        if case == "refused":
            assert whole.count(squash("declined to analyse this image")) == 1
            assert squash("outside the 14") not in whole


def orthanc_id(orthanc: Orthanc, sop_instance_uid: str) -> str:
    """Orthanc's own id of an instance, by its SOP Instance UID."""
    found = orthanc.rest("POST", "/tools/lookup", sop_instance_uid.encode())
    assert isinstance(found, list) and len(found) == 1, found
    return str(found[0]["ID"])


def _get(url: str) -> tuple[str, bytes]:
    with urllib.request.urlopen(url, timeout=60) as resp:
        return resp.headers.get("Content-Type", ""), resp.read()


@pytest.mark.integration
def test_rg1_through_orthanc_with_sr_and_page(serve_factory: Any, vllm_standin: Any,
                                              rg1: Path, tmp_path: Path) -> None:
    labels = ("Pneumothorax", "Cardiomegaly", "Pleural Effusion")
    vllm_standin.reset(labels=labels)
    srv = serve_factory.new(backend_env("openai", standin_url=vllm_standin.url))
    orthanc = Orthanc(tmp_path, gateway_port=srv.port)
    try:
        dest = f"reply:{orthanc.dicom_port}/sr+page+pdf"
        srv.env["CXR_DESTINATIONS"] = dest
        srv.env["CXR_ALLOWED_CALLING_AETS"] = "ORTHANC"
        srv.start()
        uploaded = orthanc.rest("POST", "/instances", rg1.read_bytes())
        assert isinstance(uploaded, dict)
        orthanc.rest("POST", "/modalities/gateway/store", uploaded["ID"].encode())
        study_uid = dcmread(rg1, stop_before_pixels=True).StudyInstanceUID
        job = wait_job(srv.data_dir, study_uid, ("done", "failed"), timeout=240)
        assert job.state == "done", job.reason
        rendered = {str(ds.SOPInstanceUID): str(ds.SOPClassUID) for ds in (
            dcmread(p, stop_before_pixels=True) for p in job.page_paths.splitlines())}
        page_uids = [u for u, cls in rendered.items() if cls == SC_IMAGE]
        (pdf_uid,) = [u for u, cls in rendered.items() if cls == ENCAPSULATED_PDF]
        assert page_uids
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            stored = orthanc.instances_in_study(study_uid)
            if {t["SOPInstanceUID"] for t in stored} >= {job.sr_sop_instance_uid, *rendered}:
                break
            time.sleep(0.5)
        by_uid = {t["SOPInstanceUID"]: t for t in stored}
        assert by_uid[job.sr_sop_instance_uid]["SOPClassUID"] == SR_3D
        assert {by_uid[u]["SOPClassUID"] for u in page_uids} == {SC_IMAGE}
        assert len({by_uid[u]["SeriesInstanceUID"] for u in page_uids}) == 1
        assert by_uid[page_uids[0]]["SeriesInstanceUID"] != \
            by_uid[job.sr_sop_instance_uid]["SeriesInstanceUID"]
        with db_for(srv.data_dir).session() as s:
            assert [(d.destination, d.state) for d in s.query(Delivery).all()] == \
                [(dest, "done")]
        # Orthanc's own renderer shows the first page; OCR reads what a reviewer sees
        kind, png = _get(f"{orthanc.url}/instances/{orthanc_id(orthanc, page_uids[0])}/preview")
        assert kind == "image/png"
        (tmp_path / "preview.png").write_bytes(png)
        text = squash(ocr(png, tmp_path, "preview"))
        assert squash(BANNER) in text, text
        for label in labels:
            assert squash(label) in text, (label, text)
        assert squash("Small right apical pneumothorax") in text, text  # the impression
        kind, pdf = _get(f"{orthanc.url}/instances/{orthanc_id(orthanc, pdf_uid)}/pdf")
        (stored,) = [dcmread(p) for p in job.page_paths.splitlines()
                     if rendered[str(dcmread(p, stop_before_pixels=True).SOPInstanceUID)]
                     == ENCAPSULATED_PDF]
        assert kind == "application/pdf"
        assert pdf == bytes(stored.EncapsulatedDocument)[:stored.EncapsulatedDocumentLength]
        (tmp_path / "served.pdf").write_bytes(pdf)
        words = " ".join(subprocess.run(
            [require_tool("pdftotext"), str(tmp_path / "served.pdf"), "-"],
            capture_output=True, text=True, check=True).stdout.split())
        assert BANNER in words and "Small right apical pneumothorax" in words, words
        assert all(label in words for label in labels), words
        for path in job.page_paths.splitlines():
            iod = "SCImage" if rendered[str(dcmread(path).SOPInstanceUID)] == SC_IMAGE \
                else "EncapsulatedPDF"
            assert dciodvfy_errors(Path(path), iod=iod) == []
    finally:
        orthanc.stop()


@pytest.mark.integration
def test_page_only_over_stow_for_the_mock_says_mock(serve_factory: Any, rg1: Path,
                                                    tmp_path: Path) -> None:
    """``#page`` on a DICOMweb destination: the pages instead of the SR; the mock's page
    says MOCK where a viewer shows it."""
    orthanc = Orthanc(tmp_path)
    try:
        dest = f"{orthanc.url}/dicom-web#page"
        srv = serve_factory.new({**backend_env("mock"), "CXR_DESTINATIONS": dest}).start()
        assert_stored(srv.storescu(rg1, extra=("-v",)))
        study_uid = dcmread(rg1, stop_before_pixels=True).StudyInstanceUID
        job = wait_job(srv.data_dir, study_uid, ("done", "failed"), timeout=240)
        assert job.state == "done", job.reason
        page_uids = [str(dcmread(p, stop_before_pixels=True).SOPInstanceUID)
                     for p in job.page_paths.splitlines()]
        stored = orthanc.instances_in_study(study_uid)
        assert sorted(t["SOPInstanceUID"] for t in stored) == sorted(page_uids)  # no SR
        assert all(t["SeriesDescription"].startswith("MOCK") for t in stored)
        _, png = _get(f"{orthanc.url}/instances/{orthanc_id(orthanc, page_uids[0])}/preview")
        text = squash(ocr(png, tmp_path, "mock-preview"))
        assert squash(BANNER) in text and squash(MOCK_BANNER) in text, text
    finally:
        orthanc.stop()


def test_a_runaway_trace_stops_at_the_page_limit_and_says_where_the_rest_is() -> None:
    result = result_for(THINK + "<answer> Edema </answer>", reasoning="word " * 60000)
    pages = render_pages(draft_from_result(result, "c"), None, version=1, sr_uid="2.25.1")
    assert len(pages) == MAX_PAGES
    short = render_pages(draft_from_result(result_for(THINK + "<answer> Edema </answer>"),
                                           "c"), None, version=1, sr_uid="2.25.1")
    assert len(short) == 1


def test_every_kind_of_object_has_its_own_series_and_marks() -> None:
    """The SR, pages, PDF and addenda are never filed in one series (issue 30: addenda and
    pages were both 9902), and each kind's description says research only (and MOCK)."""
    from dicom_gateway.documents import marks
    from dicom_gateway.documents.series import addendum_instance_number

    numbers = [series_number(k) for k in Kind]
    assert len(set(numbers)) == len(numbers) == 4, numbers
    for kind in Kind:
        for mock in (False, True):
            text = marks.series_description(kind, mock)
            assert "RESEARCH ONLY" in text and len(text) <= 64, text
            assert text.startswith("MOCK") == mock, text
    assert [addendum_instance_number(n) for n in (1, 2, 3)] == [1, 2, 3]
    with pytest.raises(ValueError):
        addendum_instance_number(0)



@pytest.mark.parametrize(("source_says", "page_says"),
                         [(None, "YES"), ("YES", "YES"), ("NO", "NO"), ("no ", "NO"), ("", "YES")])
def test_a_page_says_burned_in_text_unless_its_source_says_none(
        rg1: Path, source_says: str | None, page_says: str) -> None:
    """The page carries the source image, which may have text burned in (issue 31)."""
    source = dcmread(rg1)
    if source_says is None:
        if "BurnedInAnnotation" in source:
            del source.BurnedInAnnotation
    else:
        source.BurnedInAnnotation = source_says
    result = result_for(THINK + "<answer> Edema </answer>")
    (page, *_) = build_pages(source, draft_from_result(result, "c"), IDENTITY, None)
    assert page.BurnedInAnnotation == page_says


def test_an_unspaced_run_wraps_without_losing_a_character_and_the_pages_stay_capped() -> None:
    """A model that degenerates into one long run with no space (issue 31): the wrap cuts
    it where it must, every line fits, nothing is lost, and the set stops at MAX_PAGES."""
    from dicom_gateway.documents import layout

    run = "".join("abcdefghijklmnopqrstuvwxyzWM.,1-"[(i * 7) % 32] for i in range(50_000))
    width = layout.WIDTH - 2 * layout.MARGIN - 12
    lines = layout._wrap(f"before {run} after", 20, width)
    assert "".join(lines).replace(" ", "") == f"before{run}after"  # each character, once
    assert lines[0] == "before" and lines[-1].endswith("after")
    font = layout._font(20)
    assert all(font.getlength(line) <= width for line in lines)
    assert len(lines) > 300  # really cut, line by line
    result = result_for(THINK + "<answer> Edema </answer>", report="FINDINGS: " + run,
                        reasoning=run)
    pages = render_pages(draft_from_result(result, "c"), None, version=1, sr_uid="2.25.1")
    assert len(pages) == MAX_PAGES
