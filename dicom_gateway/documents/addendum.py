"""The addendum SR: a follow-up thread on a study, filed beside the first research-draft SR.

When a reviewer asks for it (``cxr-gateway ask --to-pacs``, the HTTP flag, the dashboard
button), the questions asked about a study and the model's answers become one more
Comprehensive 3D SR in the source study, in the addendum series
(``dicom_gateway.documents.series``; numbered in the order they were asked for), that

* references the first SR: in the Current Requested Procedure Evidence (where a reader
  finds it by its SOP Class) and in a sentence naming its UID -- not as a predecessor,
  because it adds to that document rather than replacing it, and not as a COMPOSITE
  content item, which TID 1500 has no row for (Pixelmed's validator warns on it);
* references the source image (the image library, as the first SR does);
* carries the same research-only marks as the first SR (``dicom_gateway.documents.marks``),
  and says MOCK wherever the mock answered;
* holds each question with who asked and when (a reviewer name or token identity,
  never patient data), the model's answer and its reasoning, verbatim.

UIDs derive from the first SR's and the question's id, so writing the same addendum
again gives the same UIDs.  Plain values in, a dataset out: no database, no Celery.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import highdicom as hd
from highdicom.sr import (
    CodedConcept,
    ContainerContentItem,
    ContentSequence,
    RelationshipTypeValues,
    TextContentItem,
)
from pydicom import Dataset
from pydicom.sr.codedict import codes

from dicom_gateway.documents import codes as sr_codes
from dicom_gateway.documents import marks
from dicom_gateway.documents.draft import Algorithm
from dicom_gateway.documents.series import Kind, addendum_instance_number, series_number
from dicom_gateway.documents.sr import (
    SRBuildError,
    image_library,
    lo_values,
    private_scheme,
    report_context,
    source_with_type2,
)
from dicom_gateway.uids import derived_uid

QUESTION = CodedConcept("FOLLOWUP_QUESTION", sr_codes.PRIVATE_SCHEME,
                        "Reviewer follow-up question")
ANSWER = CodedConcept("FOLLOWUP_ANSWER", sr_codes.PRIVATE_SCHEME,
                      "Model answer to a follow-up question, verbatim")
ANSWER_REASONING = CodedConcept("FOLLOWUP_REASONING", sr_codes.PRIVATE_SCHEME,
                                "Model reasoning trace, follow-up answer")


@dataclass(frozen=True)
class ThreadItem:
    """One answered question of the thread, as the addendum records it."""

    asked_by: str
    asked_at: str  # ISO 8601
    question: str
    answer: str
    reasoning: str
    status: str  # answered | refused | truncated | mock


@dataclass(frozen=True)
class AddendumContent:
    """What the addendum says, and the algorithm that answered."""

    items: tuple[ThreadItem, ...]
    algorithm: Algorithm  # the model that answered (name, version with its revision)
    is_mock: bool
    software_version: str = ""
    site_name: str = ""


def _text(name: CodedConcept, value: str) -> TextContentItem:
    return TextContentItem(name=name, value=value,
                           relationship_type=RelationshipTypeValues.CONTAINS)


def addendum_uids(first_sr: Dataset, key: str) -> tuple[str, str]:
    """(series, instance) UIDs: from the first SR's and ``key`` (the question's id)."""
    first = str(first_sr.SOPInstanceUID)
    return (derived_uid(str(first_sr.SeriesInstanceUID), "addendum-series"),
            derived_uid(first, "addendum", key))


def _thread_container(content: AddendumContent, first_sr: Dataset) -> ContainerContentItem:
    items: list[TextContentItem] = [
        _text(sr_codes.COMMENT, d) for d in marks.disclaimers(content.is_mock)]
    items.append(_text(sr_codes.COMMENT, (
        "Addendum to the AI research draft SR " f"{first_sr.SOPInstanceUID}: follow-up "
        "questions a reviewer asked about this study and the model's answers. The answers "
        "are unverified AI output, not a radiologist's reading.")))
    for n, item in enumerate(content.items, start=1):
        items.append(_text(QUESTION, f"Question {n}, asked by {item.asked_by or 'unknown'} "
                                     f"at {item.asked_at}: {item.question}"))
        answer = item.answer or "(empty answer)"
        if item.status != "answered":
            answer = f"[{item.status.upper()}] {answer}"
        items.append(_text(ANSWER, answer))
        if item.reasoning.strip():
            items.append(_text(ANSWER_REASONING, item.reasoning))
    items.append(_text(codes.DCM.AlgorithmName, content.algorithm.name))
    items.append(_text(codes.DCM.AlgorithmVersion, content.algorithm.version))
    container = ContainerContentItem(name=sr_codes.QUALITATIVE_EVALUATIONS,
                                     relationship_type=RelationshipTypeValues.CONTAINS,
                                     is_content_continuous=False)
    container.ContentSequence = ContentSequence(items)
    return container


def _root(content: AddendumContent, source: Dataset, first_sr: Dataset,
          observer_uid: str) -> ContainerContentItem:
    root = ContainerContentItem(name=codes.cid7021.ImagingMeasurementReport, template_id="1500")
    seq = report_context(observer_uid, marks.PRODUCT, content.algorithm.name)
    seq.append(image_library(source))
    seq.append(_thread_container(content, first_sr))
    root.ContentSequence = seq
    return root


def build_addendum(source: Dataset, first_sr: Dataset, content: AddendumContent,
                   key: str, ordinal: int) -> Dataset:
    """The addendum SR in the source study, referencing the first SR and the image;
    ``ordinal``: which addendum of the job this is (1 for the first asked for)."""
    if not content.items:
        raise SRBuildError("an addendum needs at least one answered question")
    source = source_with_type2(source)
    series_uid, sop_uid = addendum_uids(first_sr, key)
    observer_uid = derived_uid(str(first_sr.SeriesInstanceUID), "addendum-device-observer")
    equipment = hd.ContributingEquipment(
        manufacturer=content.algorithm.manufacturer,
        purpose_of_reference=codes.DCM.ProcessingEquipment,
        manufacturer_model_name=content.algorithm.name[:64],
        software_versions=[content.software_version or "cxr-reason-gateway",
                           *lo_values(content.algorithm.version)])
    try:
        sr = hd.sr.Comprehensive3DSR(
            evidence=[source, first_sr],
            content=_root(content, source, first_sr, observer_uid),
            series_instance_uid=series_uid, series_number=series_number(Kind.ADDENDUM),
            sop_instance_uid=sop_uid, instance_number=addendum_instance_number(ordinal),
            manufacturer=marks.PRODUCT, contributing_equipment=[equipment],
            performed_procedure_codes=[sr_codes.PROCEDURE_CXR],
            specific_character_set="ISO_IR 192", **marks.sr_flags(Kind.ADDENDUM, content.is_mock))
    except (ValueError, TypeError) as exc:
        raise SRBuildError(f"cannot build the addendum SR from this source header: {exc}") \
            from exc
    marks.mark_header(sr, site_name=content.site_name,
                      software_version=content.software_version)
    sr.CodingSchemeIdentificationSequence = [private_scheme()]
    return sr


def referenced_first_sr(addendum: Dataset) -> list[str]:
    """The SOP Instance UIDs of SRs an addendum references in its evidence (for checks)."""
    out: list[str] = []
    for study in getattr(addendum, "CurrentRequestedProcedureEvidenceSequence", []) or []:
        for series in study.ReferencedSeriesSequence:
            for ref in series.ReferencedSOPSequence:
                out.append(str(ref.ReferencedSOPInstanceUID))
    return out


def thread_items(rows: Sequence[dict[str, str]]) -> tuple[ThreadItem, ...]:
    """ThreadItems from question views (``asked_by``, ``asked_at``, ``question``, ...)."""
    return tuple(ThreadItem(str(r.get("asked_by") or ""), str(r.get("asked_at") or ""),
                            str(r.get("question") or ""), str(r.get("answer") or ""),
                            str(r.get("reasoning") or ""), str(r.get("status") or ""))
                 for r in rows)
