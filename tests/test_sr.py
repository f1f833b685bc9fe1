"""The research-draft SR: content, marking, and dciodvfy on hard cases."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from highdicom.sr.utils import find_content_items
from pydicom import Dataset, dcmread

from dicom_gateway.sr import Algorithm, DraftReport, SRIdentity, build_sr
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
def test_dciodvfy_reports_no_errors(rg1: Path, tmp_path: Path, case: str) -> None:
    sr, path = build(rg1, tmp_path, **CASES[case])
    assert dciodvfy_errors(path) == []
    assert sr.SpecificCharacterSet == "ISO_IR 192"


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
