"""The research-draft Structured Report.

A Comprehensive 3D SR with a TID 1500 "Imaging Measurement Report" tree: one TID 1501
group per asserted CheXpert label (coded finding, TID 4019 algorithm identification,
source image), and a "Qualitative Evaluations" container holding the disclaimer, the
report sections and the reasoning trace as TEXT.  The research-only marking is put
on several independent attributes so that no single viewer or router that drops one
of them can make the draft look like a signed clinical report.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import highdicom as hd
from highdicom.coding_schemes import CodingSchemeIdentificationItem
from highdicom.sr import (
    CodeContentItem,
    ContainerContentItem,
    ContentSequence,
    ImageContentItem,
    RelationshipTypeValues,
    TextContentItem,
)
from pydicom import Dataset
from pydicom.sr.codedict import codes

from dicom_gateway import sr_codes
from dicom_gateway.uids import derived_uid

SERIES_DESCRIPTION = "AI DRAFT - RESEARCH ONLY - NOT FOR CLINICAL USE"
MOCK_SERIES_DESCRIPTION = "MOCK AI DRAFT - RESEARCH ONLY - NOT CLINICAL"
COMPLETION_DESCRIPTION = "AI draft pending radiologist review; research only"
DISCLAIMER = (
    "RESEARCH USE ONLY. Unverified AI-generated draft, not for clinical use. "
    "It has not been reviewed by a radiologist and must not be used for diagnosis or "
    "treatment. The model can miss findings, hallucinate, or be overconfident."
)
MOCK_DISCLAIMER = (
    "MOCK BACKEND: this SR was produced by the gateway's mock model backend for wiring "
    "tests. It contains no reading of the image."
)
SR_SERIES_NUMBER = 9901
COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"
STATUS_SENTENCES = {
    "ok": "The model returned a complete, parseable answer.",
    "refused": "The model declined to analyse this image (refusal); no findings are asserted.",
    "truncated": "The model's output was truncated before it finished; no findings are asserted.",
    "unparseable": "The model's output had no parseable answer; no findings are asserted.",
}


@dataclass(frozen=True)
class Algorithm:
    """TID 4019 algorithm identification."""

    name: str
    version: str
    manufacturer: str
    parameters: tuple[str, ...] = ()


@dataclass(frozen=True)
class DraftReport:
    """Everything the SR says, as plain values (no model objects cross this line)."""

    status: str  # ok | refused | truncated | unparseable
    labels: tuple[str, ...]
    reasoning: str
    algorithm: Algorithm
    is_mock: bool
    indication: str = ""
    comparison: str = ""
    technique: str = ""
    findings: tuple[tuple[str, str], ...] = ()
    impression: tuple[str, ...] = ()
    report_text: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.status not in STATUS_SENTENCES:
            raise ValueError(f"unknown result status {self.status!r}")
        unknown = [lab for lab in self.labels if lab not in sr_codes.LABEL_CODES]
        if unknown:
            raise ValueError(f"labels without a code: {unknown}")
        if self.status != "ok" and self.labels:
            raise ValueError("a result that is not ok asserts no findings")


@dataclass(frozen=True)
class SRIdentity:
    series_instance_uid: str
    sop_instance_uid: str
    instance_number: int
    manufacturer: str
    software_version: str
    site_name: str
    device_observer_uid: str


def _text(name: Any, value: str) -> TextContentItem:
    return TextContentItem(
        name=name, value=value, relationship_type=RelationshipTypeValues.CONTAINS
    )


def _qualitative_container(draft: DraftReport) -> ContainerContentItem:
    items: list[TextContentItem] = [_text(sr_codes.COMMENT, DISCLAIMER)]
    if draft.is_mock:
        items.append(_text(sr_codes.COMMENT, MOCK_DISCLAIMER))
    items.append(_text(sr_codes.RESULT_STATUS, STATUS_SENTENCES[draft.status]))
    for note in draft.notes:
        items.append(_text(sr_codes.COMMENT, note))
    if draft.indication:
        items.append(_text(sr_codes.INDICATION, draft.indication))
    if draft.comparison:
        items.append(_text(sr_codes.COMPARISON, draft.comparison))
    if draft.technique:
        items.append(_text(sr_codes.TECHNIQUE, draft.technique))
    for region, text in draft.findings:
        items.append(_text(sr_codes.FINDING, f"{region}: {text}" if region else text))
    for bullet in draft.impression:
        items.append(_text(sr_codes.IMPRESSION, bullet))
    if draft.report_text and not (draft.findings or draft.impression):
        items.append(_text(sr_codes.COMMENT, draft.report_text))
    if draft.reasoning:
        items.append(_text(sr_codes.REASONING, draft.reasoning))
    container = ContainerContentItem(
        name=sr_codes.QUALITATIVE_EVALUATIONS,
        relationship_type=RelationshipTypeValues.CONTAINS,
        is_content_continuous=False,
    )
    container.ContentSequence = ContentSequence(items)
    return container


def _finding_groups(draft: DraftReport, source: Dataset,
                    identity: SRIdentity) -> ContainerContentItem | None:
    if not draft.labels:
        return None
    algo = hd.sr.AlgorithmIdentification(
        name=draft.algorithm.name,
        version=draft.algorithm.version,
        parameters=list(draft.algorithm.parameters) or None,
        manufacturer=draft.algorithm.manufacturer,
    )
    container = ContainerContentItem(
        name=codes.DCM.ImagingMeasurements, relationship_type=RelationshipTypeValues.CONTAINS
    )
    container.ContentSequence = ContentSequence()
    for n, label in enumerate(draft.labels, start=1):
        group = hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(
                identifier=f"CheXpert label {n}: {label}",
                uid=derived_uid(identity.sop_instance_uid, "tracking", str(n), label),
            ),
            finding_type=sr_codes.LABEL_CODES[label],
            algorithm_id=algo,
            source_images=[
                hd.sr.SourceImageForMeasurementGroup(
                    referenced_sop_class_uid=source.SOPClassUID,
                    referenced_sop_instance_uid=source.SOPInstanceUID,
                )
            ],
        )
        container.ContentSequence.extend(group)
    return container


def _image_library(source: Dataset) -> ContainerContentItem:
    """TID 1600 by hand: highdicom's ImageLibrary insists on ImagerPixelSpacing for CR/DX,
    which many radiographs (RG1 among them) do not carry."""
    image = ImageContentItem(
        name=sr_codes.SOURCE,
        referenced_sop_class_uid=source.SOPClassUID,
        referenced_sop_instance_uid=source.SOPInstanceUID,
        relationship_type=RelationshipTypeValues.CONTAINS,
    )
    group = ContainerContentItem(
        name=codes.DCM.ImageLibraryGroup, relationship_type=RelationshipTypeValues.CONTAINS
    )
    group.ContentSequence = ContentSequence([image])
    library = ContainerContentItem(
        name=codes.DCM.ImageLibrary, relationship_type=RelationshipTypeValues.CONTAINS
    )
    library.ContentSequence = ContentSequence([group])
    return library


def _root(draft: DraftReport, source: Dataset, identity: SRIdentity) -> ContainerContentItem:
    root = ContainerContentItem(name=codes.cid7021.ImagingMeasurementReport, template_id="1500")
    seq = ContentSequence()
    seq.extend(hd.sr.LanguageOfContentItemAndDescendants(
        hd.sr.CodedConcept("en-US", "RFC5646", "English (United States)")))
    observer = hd.sr.ObserverContext(
        observer_type=codes.cid270.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=identity.device_observer_uid,
            name="CXR Reason Gateway",
            manufacturer_name=identity.manufacturer,
            model_name=draft.algorithm.name,
        ),
    )
    seq.extend(hd.sr.ObservationContext(observer_device_context=observer))
    seq.append(CodeContentItem(
        name=codes.DCM.ProcedureReported, value=sr_codes.PROCEDURE_CXR,
        relationship_type=RelationshipTypeValues.HAS_CONCEPT_MOD,
    ))
    seq.append(_image_library(source))
    groups = _finding_groups(draft, source, identity)
    if groups is not None:
        seq.append(groups)
    seq.append(_qualitative_container(draft))
    root.ContentSequence = seq
    return root


# Type 2 Patient and General Study attributes the SR copies from the source: senders
# often omit them, highdicom requires them present, and empty is what Type 2 allows.
TYPE2_FROM_SOURCE = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex",
                     "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID",
                     "AccessionNumber")


def _with_type2(source: Dataset) -> Dataset:
    missing = [k for k in TYPE2_FROM_SOURCE if k not in source]
    if not missing:
        return source
    from copy import deepcopy

    filled = deepcopy(source)
    for keyword in missing:
        setattr(filled, keyword, "")
    return filled


def build_sr(source: Dataset, draft: DraftReport, identity: SRIdentity,
             previous_versions: Sequence[Dataset] = ()) -> Dataset:
    """Build the SR in the source study, in a new series, referencing the source image."""
    source = _with_type2(source)
    equipment = hd.ContributingEquipment(
        manufacturer=draft.algorithm.manufacturer,
        purpose_of_reference=codes.DCM.ProcessingEquipment,
        manufacturer_model_name=draft.algorithm.name[:64],
        software_versions=[identity.software_version, draft.algorithm.version[:64]],
    )
    sr = hd.sr.Comprehensive3DSR(
        evidence=[source, *previous_versions],
        content=_root(draft, source, identity),
        series_instance_uid=identity.series_instance_uid,
        series_number=SR_SERIES_NUMBER,
        sop_instance_uid=identity.sop_instance_uid,
        instance_number=identity.instance_number,
        manufacturer=identity.manufacturer,
        is_complete=False,
        is_final=False,
        is_verified=False,
        previous_versions=list(previous_versions) or None,
        contributing_equipment=[equipment],
        series_description=MOCK_SERIES_DESCRIPTION if draft.is_mock else SERIES_DESCRIPTION,
        specific_character_set="ISO_IR 192",
        content_qualification="RESEARCH",
    )
    sr.CompletionFlagDescription = COMPLETION_DESCRIPTION
    sr.ManufacturerModelName = "CXR Reason Gateway"
    sr.SoftwareVersions = identity.software_version
    sr.ClinicalTrialCoordinatingCenterName = identity.site_name[:64]
    sr.ClinicalTrialSeriesID = "CXR-REASON-AI"
    sr.ClinicalTrialSeriesDescription = "AI-generated research output - not for clinical use"
    scheme = CodingSchemeIdentificationItem(
        designator=sr_codes.PRIVATE_SCHEME, name=sr_codes.PRIVATE_SCHEME_NAME,
        responsible_organization="CXR Reason Gateway",
    )
    sr.CodingSchemeIdentificationSequence = [scheme]
    return sr


def as_comprehensive_sr(sr: Dataset) -> Dataset:
    """The same document as a Comprehensive SR (88.33), for PACS without 3D SR support.

    A different SOP Class is a different instance, so it gets its own derived UID.
    """
    from copy import deepcopy

    out = deepcopy(sr)
    out.SOPClassUID = COMPREHENSIVE_SR
    out.SOPInstanceUID = derived_uid(str(sr.SOPInstanceUID), "comprehensive-sr")
    out.file_meta.MediaStorageSOPClassUID = out.SOPClassUID
    out.file_meta.MediaStorageSOPInstanceUID = out.SOPInstanceUID
    return out
