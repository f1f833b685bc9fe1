"""The research draft as pages every viewer shows: a Secondary Capture beside the SR.

A person rarely reads an SR's tree, Orthanc's renderer refuses ours, and many PACS
viewers show no SR text at all; a Secondary Capture image is the one object every viewer
displays.  So the same ``DraftReport`` the SR is built from is also drawn as one or more
pages (the model-input image, the labels found, the impression, the findings by the
template's sub-headings, the reasoning, continued on further pages) and filed as
highdicom ``SCImage`` instances in the source study, in a series of their own.

What a page must never do is look like a signed report: every page carries the banner
"AI DRAFT - RESEARCH ONLY - NOT FOR CLINICAL USE" at its top and bottom, a mock result
says MOCK in a band of its own under it on every page, and the header attributes carry
the same research-only marks as the SR (series description, image comments, clinical
trial series, derivation description).  Identifiers are those the SR carries (the
source's patient and study attributes, in the header only; none is drawn), and the
algorithm's identity (name, version with its revision) is drawn on every page.

UIDs derive from the SR's own (which derive from the installation's identity, the job,
its version and the model), so a repeated task writes the same pages and a new job
version writes new ones in the same series, saying which version they supersede.
The drawing itself (layout, banners, fonts) is ``dicom_gateway.documents.layout``'s.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import highdicom as hd
import numpy as np
from pydicom import Dataset

from dicom_gateway.documents import marks
from dicom_gateway.documents.draft import DraftReport, SRIdentity
from dicom_gateway.documents.layout import render_pages
from dicom_gateway.documents.series import Kind, series_number
from dicom_gateway.documents.sr import SRBuildError, processing_equipment, source_with_type2
from dicom_gateway.uids import derived_uid

__all__ = ["PageIdentity", "build_pages", "burned_in_annotation", "page_identity"]


@dataclass(frozen=True)
class PageIdentity:
    """The pages' series and per-page UIDs, from the SR's (see the module docstring)."""

    series_instance_uid: str
    sr_sop_instance_uid: str
    version: int

    def sop_instance_uid(self, page: int) -> str:
        return derived_uid(self.sr_sop_instance_uid, "report-page", str(page))

    def instance_number(self, page: int) -> int:
        return self.version * 100 + page


def page_identity(identity: SRIdentity) -> PageIdentity:
    return PageIdentity(derived_uid(identity.series_instance_uid, "report-page-series"),
                        identity.sop_instance_uid, identity.instance_number)


def burned_in_annotation(source: Dataset) -> str:
    """What a page says of burned-in text: it carries the source image, which may have
    identifying text burned in, so YES unless the source itself says NO.  (The text the
    gateway draws names no patient; an unknown source is not assumed clean.)"""
    return "NO" if str(source.get("BurnedInAnnotation", "")).strip().upper() == "NO" else "YES"


def build_pages(source: Dataset, draft: DraftReport, identity: SRIdentity,
                model_input: bytes | None, supersedes: int | None = None) -> list[Dataset]:
    """The pages as Secondary Capture instances in the source study, their own series."""
    ids = page_identity(identity)
    images = render_pages(draft, model_input, version=identity.instance_number,
                          sr_uid=identity.sop_instance_uid, supersedes=supersedes)
    ref = source_with_type2(source)
    equipment = processing_equipment(draft, identity)
    out: list[Dataset] = []
    for n, image in enumerate(images, 1):
        try:
            with warnings.catch_warnings():
                # the SR copies the same names as they are; highdicom only warns about them
                warnings.simplefilter("ignore", UserWarning)
                sc = hd.sc.SCImage(
                    pixel_array=np.asarray(image, dtype=np.uint8),
                    photometric_interpretation="RGB", bits_allocated=8,
                    # highdicom asks for a frame of reference; a page has none, so the
                    # orientation it insists on is emptied below (Type 2: known to be unknown)
                    coordinate_system="PATIENT", patient_orientation=("L", "F"),
                    study_instance_uid=ref.StudyInstanceUID,
                    series_instance_uid=ids.series_instance_uid,
                    series_number=series_number(Kind.PAGE),
                    sop_instance_uid=ids.sop_instance_uid(n),
                    instance_number=ids.instance_number(n),
                    manufacturer=identity.manufacturer,
                    patient_id=ref.PatientID, patient_name=ref.PatientName,
                    patient_birth_date=ref.PatientBirthDate, patient_sex=ref.PatientSex or None,
                    accession_number=ref.AccessionNumber, study_id=ref.StudyID,
                    study_date=ref.StudyDate or None, study_time=ref.StudyTime or None,
                    referring_physician_name=ref.ReferringPhysicianName,
                    contributing_equipment=[equipment],
                    series_description=marks.series_description(Kind.PAGE, draft.is_mock),
                )
        except (ValueError, TypeError) as exc:
            raise SRBuildError(f"cannot build the report page from this source header: "
                               f"{exc}") from exc
        _mark(sc, source, draft, identity, n, len(images))
        out.append(sc)
    return out


def _mark(sc: Dataset, source: Dataset, draft: DraftReport, identity: SRIdentity,
          page: int, total: int) -> None:
    """The research-only marks and references, on independent attributes as on the SR."""
    sc.SpecificCharacterSet = "ISO_IR 192"
    sc.PatientOrientation = ""
    sc.Laterality = ""  # Type 2C: a page of text has none
    sc.ImageType = ["DERIVED", "SECONDARY"]
    sc.ConversionType = "SYN"
    sc.BurnedInAnnotation = burned_in_annotation(source)
    sc.RecognizableVisualFeatures = "NO"
    marks.mark_header(sc, site_name=identity.site_name,
                      software_version=identity.software_version)
    comments = (f"{marks.BANNER}. {marks.COMPLETION_DESCRIPTION}. Page {page} of {total}. "
                f"{marks.DISCLAIMER}")
    if draft.is_mock:
        comments = f"{marks.MOCK_DISCLAIMER} {comments}"
    sc.ImageComments = comments
    sc.DerivationDescription = (f"Rendered research draft of AI SR {identity.sop_instance_uid}"
                                f" by {draft.algorithm.name}; not for clinical use")[:1024]
    ref = Dataset()
    ref.ReferencedSOPClassUID = source.SOPClassUID
    ref.ReferencedSOPInstanceUID = source.SOPInstanceUID
    sc.SourceImageSequence = [ref]
