"""The research-only marks: the one place that says, on every object the gateway writes,
that it is an unverified AI research draft and not for clinical use.

A viewer, router or archive may drop or ignore any single attribute, so the marks go on
several independent ones: the series description, the SR's Preliminary, Verification and
Completion flags with the completion description, ContentQualification RESEARCH, the
clinical-trial attributes, a disclaimer in the content and, on pages, a drawn banner.  A
mock result says MOCK in each of them.  The SR, the addendum, the pages and the PDF all
take their marks from here, so they cannot drift apart.
"""

from __future__ import annotations

from typing import Any

from pydicom import Dataset

from dicom_gateway.documents.series import Kind

__all__ = ["BANNER", "COMPLETION_DESCRIPTION", "DISCLAIMER", "MOCK_BANNER",
           "MOCK_DISCLAIMER", "disclaimers", "mark_header", "series_description",
           "sr_flags"]

DISCLAIMER = (
    "RESEARCH USE ONLY. Unverified AI-generated draft, not for clinical use. "
    "It has not been reviewed by a radiologist and must not be used for diagnosis or "
    "treatment. The model can miss findings, hallucinate, or be overconfident."
)
MOCK_DISCLAIMER = (
    "MOCK BACKEND: this SR was produced by the gateway's mock model backend for wiring "
    "tests. It contains no reading of the image."
)
BANNER = "AI DRAFT - RESEARCH ONLY - NOT FOR CLINICAL USE"
MOCK_BANNER = "MOCK - NO MODEL READ THIS IMAGE - NOTHING HERE IS A FINDING"
COMPLETION_DESCRIPTION = "AI draft pending radiologist review; research only"
CLINICAL_TRIAL_SERIES_ID = "CXR-REASON-AI"
CLINICAL_TRIAL_SERIES_DESCRIPTION = "AI-generated research output - not for clinical use"
PRODUCT = "CXR Reason Gateway"

# (as written, for a mock result): 64 characters at most (LO)
SERIES_DESCRIPTIONS = {
    Kind.SR: ("AI DRAFT - RESEARCH ONLY - NOT FOR CLINICAL USE",
              "MOCK AI DRAFT - RESEARCH ONLY - NOT CLINICAL"),
    Kind.ADDENDUM: ("AI DRAFT ADDENDUM - RESEARCH ONLY - NOT CLINICAL",
                    "MOCK AI ADDENDUM - RESEARCH ONLY - NOT CLINICAL"),
    Kind.PAGE: ("AI DRAFT PAGE - RESEARCH ONLY - NOT FOR CLINICAL USE",
                "MOCK AI DRAFT PAGE - RESEARCH ONLY - NOT CLINICAL"),
    Kind.PDF: ("AI DRAFT PDF - RESEARCH ONLY - NOT FOR CLINICAL USE",
               "MOCK AI DRAFT PDF - RESEARCH ONLY - NOT CLINICAL"),
}
assert all(len(d) <= 64 for pair in SERIES_DESCRIPTIONS.values() for d in pair)


def series_description(kind: Kind, is_mock: bool) -> str:
    return SERIES_DESCRIPTIONS[kind][1 if is_mock else 0]


def disclaimers(is_mock: bool) -> list[str]:
    """The disclaimer sentences a document's content opens with."""
    return [DISCLAIMER, MOCK_DISCLAIMER] if is_mock else [DISCLAIMER]


def sr_flags(kind: Kind, is_mock: bool) -> dict[str, Any]:
    """highdicom SR constructor arguments that mark an SR as a research draft:
    PARTIAL, UNVERIFIED, PRELIMINARY, ContentQualification RESEARCH, the description."""
    return {"is_complete": False, "is_final": False, "is_verified": False,
            "content_qualification": "RESEARCH",
            "series_description": series_description(kind, is_mock)}


def mark_header(ds: Dataset, *, site_name: str, software_version: str) -> None:
    """The header marks every object carries, whatever its IOD: the product as the
    model name, its version, and the clinical-trial attributes naming research output.
    An SR also gets the completion description beside its PARTIAL flag."""
    ds.ManufacturerModelName = PRODUCT
    if software_version:
        ds.SoftwareVersions = software_version
    ds.ClinicalTrialCoordinatingCenterName = (site_name or "research site")[:64]
    ds.ClinicalTrialSeriesID = CLINICAL_TRIAL_SERIES_ID
    ds.ClinicalTrialSeriesDescription = CLINICAL_TRIAL_SERIES_DESCRIPTION
    if "CompletionFlag" in ds:
        ds.CompletionFlagDescription = COMPLETION_DESCRIPTION
