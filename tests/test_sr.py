"""The research-draft SR: content, marking, identity, and dciodvfy on hard cases."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from highdicom.sr.utils import find_content_items
from pydicom import Dataset, dcmread

from dicom_gateway.documents import codes as sr_codes
from dicom_gateway.documents.sr import (
    Algorithm,
    DraftReport,
    SRIdentity,
    as_comprehensive_sr,
    build_sr,
)
from models.backend import PINNED_REVISION
from models.parsing import parse_report
from tests.peers import dciodvfy_errors, require_tool
from tests.test_parsing import REPORT, REPORT_SENTENCES

ALGO = Algorithm("NV-Reason-CXR-3B", f"hf:nvidia/NV-Reason-CXR-3B@{PINNED_REVISION}",
                 "NVIDIA", ("prompt=Find abnormalities and support devices.",))
IDENTITY = SRIdentity.derive("seed-a", "1.2.3", "job-1", 1, "local|m@r", "CXR Reason Gateway",
                             "cxr-reason-gateway 0.1.0", "Test site")


def build(rg1: Path, tmp_path: Path, **kw: Any) -> tuple[Dataset, Path]:
    fields: dict[str, Any] = dict(status="ok", labels=("No Finding",), reasoning="r",
                                  algorithm=ALGO, is_mock=False)
    fields.update(kw)
    sr = build_sr(dcmread(rg1, stop_before_pixels=True), DraftReport(**fields), IDENTITY)
    path = tmp_path / "sr.dcm"
    sr.save_as(path, enforce_file_format=True)
    return dcmread(path), path


def texts(sr: Dataset, code: Any = None) -> list[str]:
    return [i.TextValue for i in find_content_items(sr, value_type="TEXT", recursive=True)
            if code is None or i.ConceptNameCodeSequence[0].CodeValue == code.value]


def coded_findings(sr: Dataset) -> list[str]:
    """Every CODE item named (121071, DCM, "Finding") anywhere in the tree."""
    return [i.ConceptCodeSequence[0].CodeMeaning
            for i in find_content_items(sr, value_type="CODE", recursive=True)
            if i.ConceptNameCodeSequence[0].CodeValue == "121071"]


def sections(report: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    return tuple((s.heading, s.items) for s in parse_report(report).sections)


CASES: dict[str, dict[str, Any]] = {
    "normal": dict(labels=("No Finding",)),
    "multi": dict(labels=("Pleural Effusion", "Cardiomegaly", "Lung Lesion", "Support Devices"),
                  report_sections=sections(REPORT), report_text=REPORT,
                  report_reasoning="I will follow the template."),
    "refusal": dict(status="refused", labels=(), reasoning="",
                    answer_text="I'm sorry, I'm specialized in medical chest X-ray analysis."),
    "truncated": dict(status="truncated", labels=(), reasoning="step " * 500),
    "no_labels": dict(status="no_labels", labels=(), answer_text="Normal"),
    "mock": dict(status="mock", labels=(), is_mock=True),
    "long": dict(reasoning="Reasoning line.\n" * 1900),  # ~30,000 characters
    "non_ascii": dict(reasoning="Épanchement ≥ 2 cm – 肺 – Ödem",
                      report_sections=(("IMPRESSION", ("Läsion?",)),)),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.integration  # dciodvfy and dcmtk as subprocesses
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


def test_report_sentences_each_appear_once_under_their_heading(rg1: Path,
                                                               tmp_path: Path) -> None:
    sr, _ = build(rg1, tmp_path, **CASES["multi"])
    heading_codes = {"INDICATION": sr_codes.INDICATION, "COMPARISON": sr_codes.COMPARISON,
                     "TECHNIQUE": sr_codes.TECHNIQUE, "FINDINGS": sr_codes.FINDING,
                     "IMPRESSION": sr_codes.IMPRESSION}
    # the items that carry the report by heading (the verbatim copy is checked apart)
    report_items = [t for code in {*heading_codes.values(), sr_codes.REPORT_SECTION,
                                   sr_codes.REPORT_PREAMBLE} for t in texts(sr, code)]
    expected: list[str] = []
    for heading, sentences in REPORT_SENTENCES.items():
        for sentence in sentences:
            item = f"{heading}: {sentence}" if heading and heading not in heading_codes \
                else sentence  # an unknown heading is kept with its text
            expected.append(item)
            assert report_items.count(item) == 1, (heading, sentence)
            code = heading_codes.get(heading) or (
                sr_codes.REPORT_SECTION if heading else sr_codes.REPORT_PREAMBLE)
            assert item in texts(sr, code), (heading, sentence)
    assert sorted(report_items) == sorted(expected)  # nothing else, nothing twice
    assert texts(sr, sr_codes.REPORT_TEXT) == [REPORT]  # plus the report verbatim
    assert texts(sr, sr_codes.REPORT_REASONING) == ["I will follow the template."]
    assert texts(sr, sr_codes.REASONING) == ["r"]


@pytest.mark.integration  # dciodvfy and dcmtk as subprocesses
def test_mock_sr_has_no_coded_finding_and_says_mock(rg1: Path, tmp_path: Path) -> None:
    sr, path = build(rg1, tmp_path, **CASES["mock"])
    assert coded_findings(sr) == []
    assert not [i for i in find_content_items(sr, value_type="CONTAINER", recursive=True)
                if i.ConceptNameCodeSequence[0].CodeValue == "125007"]  # measurement group
    assert "MOCK" in sr.SeriesDescription
    (status,) = texts(sr, sr_codes.RESULT_STATUS)
    assert status.startswith("MOCK")
    assert any(t.startswith("MOCK BACKEND") for t in texts(sr))
    assert dciodvfy_errors(path) == []


def test_mock_with_configured_labels_codes_them_and_says_so(rg1: Path, tmp_path: Path) -> None:
    sr, _ = build(rg1, tmp_path, status="mock", labels=("Edema",), is_mock=True)
    assert coded_findings(sr) == ["Pulmonary edema"]
    (status,) = texts(sr, sr_codes.RESULT_STATUS)
    assert "CXR_MOCK_LABELS" in status and status.startswith("MOCK")


@pytest.mark.parametrize("status", ["refused", "truncated", "unparseable", "no_labels"])
def test_results_that_are_not_readings_code_nothing(rg1: Path, tmp_path: Path,
                                                    status: str) -> None:
    sr, _ = build(rg1, tmp_path, status=status, labels=())
    assert coded_findings(sr) == []
    (sentence,) = texts(sr, sr_codes.RESULT_STATUS)
    assert "No findings are asserted" in sentence and "not a normal result" in sentence
    with pytest.raises(ValueError, match="asserts no findings"):
        DraftReport(status=status, labels=("Edema",), reasoning="", algorithm=ALGO,
                    is_mock=False)


def test_ok_needs_a_label_and_mock_needs_the_mock() -> None:
    with pytest.raises(ValueError, match="at least one label"):
        DraftReport(status="ok", labels=(), reasoning="", algorithm=ALGO, is_mock=False)
    with pytest.raises(ValueError, match="mock"):
        DraftReport(status="ok", labels=("Edema",), reasoning="", algorithm=ALGO, is_mock=True)


def test_report_truncation_is_flagged(rg1: Path, tmp_path: Path) -> None:
    sr, _ = build(rg1, tmp_path, report_truncated=True, report_text="FINDINGS: Lungs: cl",
                  report_sections=(("FINDINGS", ("Lungs: cl",)),))
    assert any("cut off at its token limit" in t for t in texts(sr, sr_codes.COMMENT))


def test_equipment_records_the_whole_revision(rg1: Path, tmp_path: Path) -> None:
    sr, _ = build(rg1, tmp_path)
    ours = [e for e in sr.ContributingEquipmentSequence
            if e.get("ManufacturerModelName") == "NV-Reason-CXR-3B"]
    assert len(ours) == 1
    assert PINNED_REVISION in list(ours[0].SoftwareVersions)
    assert all(len(v) <= 64 for v in ours[0].SoftwareVersions)


def test_identity_depends_on_installation_job_and_model() -> None:
    def uids(seed: str = "seed-a", job: str = "job-1", version: int = 1,
             model: str = "local|m@r") -> tuple[str, str, str]:
        i = SRIdentity.derive(seed, "1.2.3", job, version, model, "m", "v", "s")
        return i.series_instance_uid, i.sop_instance_uid, i.device_observer_uid

    assert uids() == uids()  # a repeated task: the same UIDs
    other = uids(seed="seed-b")  # another installation or a reset database
    assert all(a != b for a, b in zip(uids(), other, strict=True))
    mock = uids(model="mock|m@r")
    assert all(a != b for a, b in zip(uids(), mock, strict=True))
    assert uids(version=2)[1] != uids()[1] and uids(version=2)[0] == uids()[0]


def test_comprehensive_fallback_is_a_distinct_instance(rg1: Path, tmp_path: Path) -> None:
    sr, _ = build(rg1, tmp_path)
    alt = as_comprehensive_sr(sr)
    assert alt.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.33"
    assert alt.SOPInstanceUID != sr.SOPInstanceUID
    assert alt.file_meta.MediaStorageSOPInstanceUID == alt.SOPInstanceUID
    assert alt.ContentSequence == sr.ContentSequence


@pytest.mark.integration  # dciodvfy and dcmtk as subprocesses
def test_superseding_sr_references_its_predecessor(rg1: Path, tmp_path: Path) -> None:
    first, _ = build(rg1, tmp_path)
    v2 = SRIdentity.derive("seed-a", "1.2.3", "job-2", 2, "local|m@r", "CXR Reason Gateway",
                           "0.1.0", "Test site")
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
    assert any("RESEARCH USE ONLY" in t for t in texts(sr))
    assert "Épanchement ≥ 2 cm – 肺 – Ödem" in texts(sr)
    assert "Läsion?" in texts(sr, sr_codes.IMPRESSION)


def test_refusal_shows_what_the_model_said(rg1: Path, tmp_path: Path) -> None:
    sr, _ = build(rg1, tmp_path, **CASES["refusal"])
    assert "281900007" not in [i.ConceptCodeSequence[0].CodeValue
                               for i in find_content_items(sr, value_type="CODE",
                                                           recursive=True)]
    assert any("declined" in t for t in texts(sr, sr_codes.RESULT_STATUS))
    assert texts(sr, sr_codes.ANSWER) == [CASES["refusal"]["answer_text"]]


@pytest.mark.integration  # dciodvfy and dcmtk as subprocesses
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
