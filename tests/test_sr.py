"""The research-draft SR: content, marking, and dciodvfy on hard cases."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from highdicom.sr.utils import find_content_items
from pydicom import Dataset, dcmread

from dicom_gateway.sr import Algorithm, DraftReport, SRIdentity, as_comprehensive_sr, build_sr
from dicom_gateway.uids import derived_uid
from tests.peers import require_tool

ALGO = Algorithm("NV-Reason-CXR-3B", "hf:nvidia/NV-Reason-CXR-3B@test", "NVIDIA",
                 ("prompt=Find abnormalities and support devices.",))
IDENTITY = SRIdentity(derived_uid("s"), derived_uid("i"), 1, "CXR Reason Gateway", "0.1.0",
                      "Test site", derived_uid("d"))


def build(rg1: Path, tmp_path: Path, **kw: object) -> tuple[Dataset, Path]:
    fields: dict[str, object] = dict(status="ok", labels=("No Finding",), reasoning="r",
                                     algorithm=ALGO, is_mock=False)
    fields.update(kw)
    sr = build_sr(dcmread(rg1, stop_before_pixels=True), DraftReport(**fields), IDENTITY)  # type: ignore[arg-type]
    path = tmp_path / "sr.dcm"
    sr.save_as(path, enforce_file_format=True)
    return dcmread(path), path


def dciodvfy_errors(path: Path) -> list[str]:
    out = subprocess.run([require_tool("dciodvfy"), str(path)], capture_output=True, text=True)
    return [ln for ln in (out.stdout + out.stderr).splitlines() if ln.startswith("Error")]


CASES = {
    "normal": dict(labels=("No Finding",)),
    "multi": dict(labels=("Pleural Effusion", "Cardiomegaly", "Lung Lesion", "Support Devices"),
                  findings=(("Lungs", "Left effusion."),), impression=("Effusion.",)),
    "refusal": dict(status="refused", labels=(), reasoning=""),
    "truncated": dict(status="truncated", labels=(), reasoning="step " * 500),
    "long": dict(reasoning="Reasoning line.\n" * 1900),  # ~30,000 characters
    "non_ascii": dict(reasoning="Épanchement ≥ 2 cm – 肺 – Ödem", impression=("Läsion?",)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_dciodvfy_reports_no_errors_and_dcmtk_renders(rg1: Path, tmp_path: Path,
                                                     case: str) -> None:
    sr, path = build(rg1, tmp_path, **CASES[case])
    assert dciodvfy_errors(path) == []
    assert sr.SpecificCharacterSet == "ISO_IR 192"
    dump = subprocess.run([require_tool("dsrdump"), str(path)], capture_output=True, text=True,
                          errors="replace")  # dsrdump cuts long values mid-character
    assert dump.returncode == 0 and "Imaging Measurement Report" in dump.stdout, dump.stderr
    html = subprocess.run([require_tool("dsr2html"), str(path)], capture_output=True, text=True,
                          errors="replace")
    assert html.returncode == 0 and "RESEARCH USE ONLY" in html.stdout, html.stderr
    fallback = tmp_path / "comprehensive.dcm"
    as_comprehensive_sr(sr).save_as(fallback, enforce_file_format=True)
    assert dciodvfy_errors(fallback) == []


def test_comprehensive_fallback_is_a_distinct_instance(rg1: Path, tmp_path: Path) -> None:
    sr, _ = build(rg1, tmp_path)
    alt = as_comprehensive_sr(sr)
    assert alt.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.33"
    assert alt.SOPInstanceUID != sr.SOPInstanceUID
    assert alt.file_meta.MediaStorageSOPInstanceUID == alt.SOPInstanceUID
    assert alt.ContentSequence == sr.ContentSequence


def test_superseding_sr_references_its_predecessor(rg1: Path, tmp_path: Path) -> None:
    first, _ = build(rg1, tmp_path)
    v2 = SRIdentity(IDENTITY.series_instance_uid, derived_uid("i2"), 2, "CXR Reason Gateway",
                    "0.1.0", "Test site", IDENTITY.device_observer_uid)
    draft = DraftReport(status="ok", labels=("Edema",), reasoning="r", algorithm=ALGO,
                        is_mock=False)
    second = build_sr(dcmread(rg1, stop_before_pixels=True), draft, v2,
                      previous_versions=[first])
    path = tmp_path / "v2.dcm"
    second.save_as(path, enforce_file_format=True)
    pred = second.PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0]
    assert pred.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == first.SOPInstanceUID
    assert dciodvfy_errors(path) == []


def test_marking_and_text_survive(rg1: Path, tmp_path: Path) -> None:
    sr, _ = build(rg1, tmp_path, **CASES["non_ascii"])
    assert (sr.PreliminaryFlag, sr.VerificationFlag, sr.CompletionFlag) == (
        "PRELIMINARY", "UNVERIFIED", "PARTIAL")
    assert sr.ContentQualification == "RESEARCH"
    assert sr.SeriesDescription == "AI DRAFT - RESEARCH ONLY - NOT FOR CLINICAL USE"
    texts = [i.TextValue for i in find_content_items(sr, value_type="TEXT", recursive=True)]
    assert any("RESEARCH USE ONLY" in t for t in texts)
    assert "Épanchement ≥ 2 cm – 肺 – Ödem" in texts


def test_refusal_asserts_no_finding_and_says_so(rg1: Path, tmp_path: Path) -> None:
    sr, _ = build(rg1, tmp_path, **CASES["refusal"])
    codes = [i.ConceptCodeSequence[0].CodeValue
             for i in find_content_items(sr, value_type="CODE", recursive=True)]
    assert "281900007" not in codes  # never "No abnormality detected"
    texts = [i.TextValue for i in find_content_items(sr, value_type="TEXT", recursive=True)]
    assert any("declined" in t for t in texts)


def test_mock_is_labelled(rg1: Path, tmp_path: Path) -> None:
    sr, _ = build(rg1, tmp_path, is_mock=True)
    assert "MOCK" in sr.SeriesDescription
    texts = [i.TextValue for i in find_content_items(sr, value_type="TEXT", recursive=True)]
    assert any(t.startswith("MOCK BACKEND") for t in texts)


def test_not_ok_result_cannot_assert_labels() -> None:
    with pytest.raises(ValueError, match="asserts no findings"):
        DraftReport(status="refused", labels=("Edema",), reasoning="", algorithm=ALGO,
                    is_mock=False)


def test_source_without_type2_attributes_still_builds(rg1: Path, tmp_path: Path) -> None:
    source = dcmread(rg1, stop_before_pixels=True)
    for keyword in ("PatientBirthDate", "PatientSex", "StudyID", "AccessionNumber",
                    "ReferringPhysicianName", "StudyTime"):
        if keyword in source:
            delattr(source, keyword)
    draft = DraftReport(status="ok", labels=("Edema",), reasoning="r", algorithm=ALGO,
                        is_mock=False)
    sr = build_sr(source, draft, IDENTITY)
    path = tmp_path / "sr.dcm"
    sr.save_as(path, enforce_file_format=True)
    assert sr.PatientBirthDate == "" and sr.StudyInstanceUID == source.StudyInstanceUID
    assert dciodvfy_errors(path) == []
