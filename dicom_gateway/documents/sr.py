"""The research-draft Structured Report.

A Comprehensive 3D SR with a TID 1500 "Imaging Measurement Report" tree: one TID 1501
group per asserted CheXpert label (coded finding, TID 4019 algorithm identification,
source image), and a "Qualitative Evaluations" container holding the disclaimer, the
report sections and the reasoning trace as TEXT.  The research-only marking is put
on several independent attributes so that no single viewer or router that drops one
of them can make the draft look like a signed clinical report.

The values the document is built from (``DraftReport``, ``SRIdentity``) are defined in
``dicom_gateway/documents/draft.py`` and importable from here.
"""

from __future__ import annotations

from collections.abc import Sequence
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
from pydicom import Dataset, config
from pydicom.sr.codedict import codes
from pydicom.valuerep import validate_value

from dicom_gateway.documents import codes as sr_codes
from dicom_gateway.documents import marks
from dicom_gateway.documents.draft import (
    LABELLED_STATUSES,
    NO_REPORT,
    REPORT_TRUNCATED,
    Algorithm,
    DraftReport,
    SRIdentity,
)
from dicom_gateway.documents.series import Kind, series_number
from dicom_gateway.uids import derived_uid

__all__ = ["Algorithm", "DraftReport", "SRBuildError", "SRIdentity", "as_comprehensive_sr",
           "build_sr", "image_library", "lo_values", "private_scheme", "processing_equipment",
           "report_context", "source_with_type2"]

COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"


def _text(name: Any, value: str) -> TextContentItem:
    return TextContentItem(
        name=name, value=value, relationship_type=RelationshipTypeValues.CONTAINS
    )


SECTION_CODES = {
    "INDICATION": sr_codes.INDICATION, "COMPARISON": sr_codes.COMPARISON,
    "TECHNIQUE": sr_codes.TECHNIQUE, "FINDINGS": sr_codes.FINDING,
    "IMPRESSION": sr_codes.IMPRESSION,
}


def _report_items(draft: DraftReport) -> list[TextContentItem]:
    """The report as written: each item once, under the heading it came with."""
    out: list[TextContentItem] = []
    for heading, texts in draft.report_sections:
        code = SECTION_CODES.get(heading)
        for text in texts:
            if code is not None:
                out.append(_text(code, text))
            elif heading:
                out.append(_text(sr_codes.REPORT_SECTION, f"{heading}: {text}"))
            else:
                out.append(_text(sr_codes.REPORT_PREAMBLE, text))
    return out


def _qualitative_container(draft: DraftReport) -> ContainerContentItem:
    items = [_text(sr_codes.COMMENT, d) for d in marks.disclaimers(draft.is_mock)]
    items.append(_text(sr_codes.RESULT_STATUS, draft.status_sentence))
    for note in draft.notes:
        items.append(_text(sr_codes.COMMENT, note))
    if draft.report_truncated:
        items.append(_text(sr_codes.COMMENT, REPORT_TRUNCATED))
    if not draft.report_text and draft.status not in LABELLED_STATUSES:
        items.append(_text(sr_codes.COMMENT, NO_REPORT))
    items.extend(_report_items(draft))
    # TID 4019's identity also outside the finding groups: a result with no group (a
    # refusal, the mock) must still say which algorithm, version and parameters made it.
    items.append(_text(codes.DCM.AlgorithmName, draft.algorithm.name))
    items.append(_text(codes.DCM.AlgorithmVersion, draft.algorithm.version))
    items.extend(_text(codes.DCM.AlgorithmParameters, p) for p in draft.algorithm.parameters)
    for code, value in ((sr_codes.ANSWER, draft.answer_text),
                        (sr_codes.REASONING, draft.reasoning),
                        (sr_codes.REPORT_TEXT, draft.report_text),
                        (sr_codes.REPORT_REASONING, draft.report_reasoning)):
        if value.strip():
            items.append(_text(code, value))
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
    )  # no manufacturer: TID 4019 is non-extensible; the equipment module names it
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


def image_library(source: Dataset) -> ContainerContentItem:
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


def report_context(observer_uid: str, manufacturer: str, model_name: str) -> ContentSequence:
    """The opening of a TID 1500 report: its language, the gateway as the device observer,
    the procedure reported.  The first SR and its addenda must say it the same way, so
    that a reader (or a query) sees one observer across a study's AI documents."""
    seq = ContentSequence()
    seq.extend(hd.sr.LanguageOfContentItemAndDescendants(
        hd.sr.CodedConcept("en-US", "RFC5646", "English (United States)")))
    observer = hd.sr.ObserverContext(
        observer_type=codes.cid270.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=observer_uid,
            name="CXR Reason Gateway",
            manufacturer_name=manufacturer,
            model_name=model_name[:64],
        ),
    )
    seq.extend(hd.sr.ObservationContext(observer_device_context=observer))
    seq.append(CodeContentItem(
        name=codes.DCM.ProcedureReported, value=sr_codes.PROCEDURE_REPORTED,
        relationship_type=RelationshipTypeValues.HAS_CONCEPT_MOD,
    ))
    return seq


def _root(draft: DraftReport, source: Dataset, identity: SRIdentity) -> ContainerContentItem:
    root = ContainerContentItem(name=codes.cid7021.ImagingMeasurementReport, template_id="1500")
    seq = report_context(identity.device_observer_uid, identity.manufacturer,
                         draft.algorithm.name)
    seq.append(image_library(source))
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


def source_with_type2(source: Dataset) -> Dataset:
    """The source's patient and study attributes as highdicom can copy them.

    Missing Type 2 attributes become empty, and so do values invalid for their VR (a birth
    date that is not a date); a value that arrived multi-valued although its VM is 1 (a
    backslash inside a name) keeps its first value, as a PACS shows it.
    """
    missing = [k for k in TYPE2_FROM_SOURCE if k not in source]
    multi = [k for k in TYPE2_FROM_SOURCE if k in source and source[k].VM > 1]
    invalid = [k for k in TYPE2_FROM_SOURCE if k in source and k not in multi
               and not _valid(source[k])]
    if not missing and not multi and not invalid:
        return source
    from copy import deepcopy

    filled = deepcopy(source)
    for keyword in missing + invalid:  # an unreadable Type 2 value: empty, as allowed
        setattr(filled, keyword, "")
    for keyword in multi:
        setattr(filled, keyword, filled[keyword].value[0])
    return filled


def _valid(element: Any) -> bool:
    try:
        validate_value(element.VR, element.value, config.RAISE)
    except (ValueError, TypeError):
        return False
    return True


class SRBuildError(ValueError):
    """The source header holds values the SR cannot carry; the message says which."""


def lo_values(text: str, limit: int = 64) -> list[str]:
    """A long identifier as LO values (64 characters at most each), split at '@' and then
    in pieces, so that nothing is cut off: ``model@revision`` becomes two values."""
    return [part[i:i + limit] for part in text.split("@") if part
            for i in range(0, len(part), limit)]


def _comprehensive_3d(source: Dataset, draft: DraftReport, identity: SRIdentity,
                      previous_versions: Sequence[Dataset],
                      equipment: hd.ContributingEquipment) -> Dataset:
    return hd.sr.Comprehensive3DSR(
        evidence=[source, *previous_versions],
        content=_root(draft, source, identity),
        series_instance_uid=identity.series_instance_uid,
        series_number=series_number(Kind.SR),
        sop_instance_uid=identity.sop_instance_uid,
        instance_number=identity.instance_number,
        manufacturer=identity.manufacturer,
        previous_versions=list(previous_versions) or None,
        contributing_equipment=[equipment],
        performed_procedure_codes=[sr_codes.PROCEDURE_CXR],
        specific_character_set="ISO_IR 192",
        **marks.sr_flags(Kind.SR, draft.is_mock),
    )


def processing_equipment(draft: DraftReport, identity: SRIdentity) -> hd.ContributingEquipment:
    """The algorithm as processing equipment (name, manufacturer, gateway and model
    versions): every object the gateway derives from a job names it the same way."""
    return hd.ContributingEquipment(
        manufacturer=draft.algorithm.manufacturer,
        purpose_of_reference=codes.DCM.ProcessingEquipment,
        manufacturer_model_name=draft.algorithm.name[:64],
        software_versions=[identity.software_version, *lo_values(draft.algorithm.version)],
    )


def build_sr(source: Dataset, draft: DraftReport, identity: SRIdentity,
             previous_versions: Sequence[Dataset] = ()) -> Dataset:
    """Build the SR in the source study, in a new series, referencing the source image."""
    source = source_with_type2(source)
    equipment = processing_equipment(draft, identity)
    try:
        sr = _comprehensive_3d(source, draft, identity, previous_versions, equipment)
    except (ValueError, TypeError) as exc:
        raise SRBuildError(f"cannot build the SR from this source header: {exc}") from exc
    marks.mark_header(sr, site_name=identity.site_name,
                      software_version=identity.software_version)
    sr.CodingSchemeIdentificationSequence = [private_scheme()]
    return sr


def private_scheme() -> CodingSchemeIdentificationItem:
    """Our private coding scheme's identification, which every SR using its codes carries."""
    return CodingSchemeIdentificationItem(
        designator=sr_codes.PRIVATE_SCHEME, name=sr_codes.PRIVATE_SCHEME_NAME,
        responsible_organization=marks.PRODUCT)


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
