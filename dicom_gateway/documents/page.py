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

import io
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import highdicom as hd
import numpy as np
from PIL import Image
from pydicom import Dataset, FileMetaDataset

from dicom_gateway.documents.draft import DISCLAIMER, MOCK_DISCLAIMER, DraftReport, SRIdentity
from dicom_gateway.documents.layout import BANNER, MAX_PAGES, MOCK_BANNER, render_pages
from dicom_gateway.documents.sr import (
    COMPLETION_DESCRIPTION,
    SRBuildError,
    processing_equipment,
    source_with_type2,
)
from dicom_gateway.uids import derived_uid

__all__ = ["BANNER", "ENCAPSULATED_PDF", "MAX_PAGES", "MOCK_BANNER", "PAGE_SERIES_NUMBER",
           "build_pages", "build_pdf", "page_identity", "render_pages"]

PAGE_SERIES_DESCRIPTION = "AI DRAFT PAGE - RESEARCH ONLY - NOT FOR CLINICAL USE"
MOCK_PAGE_SERIES_DESCRIPTION = "MOCK AI DRAFT PAGE - RESEARCH ONLY - NOT CLINICAL"
PAGE_SERIES_NUMBER = 9902
PDF_SERIES_NUMBER = 9903
ENCAPSULATED_PDF = "1.2.840.10008.5.1.4.1.1.104.1"


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
                    series_number=PAGE_SERIES_NUMBER,
                    sop_instance_uid=ids.sop_instance_uid(n),
                    instance_number=ids.instance_number(n),
                    manufacturer=identity.manufacturer,
                    patient_id=ref.PatientID, patient_name=ref.PatientName,
                    patient_birth_date=ref.PatientBirthDate, patient_sex=ref.PatientSex or None,
                    accession_number=ref.AccessionNumber, study_id=ref.StudyID,
                    study_date=ref.StudyDate or None, study_time=ref.StudyTime or None,
                    referring_physician_name=ref.ReferringPhysicianName,
                    contributing_equipment=[equipment],
                    series_description=MOCK_PAGE_SERIES_DESCRIPTION if draft.is_mock
                    else PAGE_SERIES_DESCRIPTION,
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
    sc.BurnedInAnnotation = "NO"  # text is drawn, but no identifier of the patient
    sc.RecognizableVisualFeatures = "NO"
    sc.ManufacturerModelName = "CXR Reason Gateway"
    sc.SoftwareVersions = identity.software_version
    comments = f"{BANNER}. {COMPLETION_DESCRIPTION}. Page {page} of {total}. {DISCLAIMER}"
    if draft.is_mock:
        comments = f"{MOCK_DISCLAIMER} {comments}"
    sc.ImageComments = comments
    sc.DerivationDescription = (f"Rendered research draft of AI SR {identity.sop_instance_uid}"
                                f" by {draft.algorithm.name}; not for clinical use")[:1024]
    sc.ClinicalTrialCoordinatingCenterName = identity.site_name[:64]
    sc.ClinicalTrialSeriesID = "CXR-REASON-AI"
    sc.ClinicalTrialSeriesDescription = "AI-generated research output - not for clinical use"
    ref = Dataset()
    ref.ReferencedSOPClassUID = source.SOPClassUID
    ref.ReferencedSOPInstanceUID = source.SOPInstanceUID
    sc.SourceImageSequence = [ref]


def build_pdf(source: Dataset, draft: DraftReport, identity: SRIdentity,
              pages: Sequence[Dataset]) -> Dataset:
    """The same pages as one Encapsulated PDF (for archives and reporting systems that
    take documents rather than images): its own series, UIDs from the SR's, the same
    identifiers and research-only marks as the pages."""
    images = [Image.fromarray(p.pixel_array) for p in pages]
    buf = io.BytesIO()
    images[0].save(buf, "PDF", save_all=True, append_images=images[1:], resolution=144.0,
                   title=BANNER, author="CXR Reason Gateway", creator="CXR Reason Gateway",
                   subject=f"{draft.algorithm.name} {draft.algorithm.version}")
    pdf = buf.getvalue()
    first = pages[0]
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = ENCAPSULATED_PDF
    ds.SOPInstanceUID = derived_uid(identity.sop_instance_uid, "report-pdf")
    for keyword in ("StudyInstanceUID", "PatientName", "PatientID", "PatientBirthDate",
                    "PatientSex", "StudyDate", "StudyTime", "ReferringPhysicianName",
                    "StudyID", "AccessionNumber", "Manufacturer", "ManufacturerModelName",
                    "SoftwareVersions", "ContributingEquipmentSequence",
                    "ClinicalTrialCoordinatingCenterName", "ClinicalTrialSeriesID",
                    "ClinicalTrialSeriesDescription", "BurnedInAnnotation",
                    "RecognizableVisualFeatures", "ConversionType"):
        if keyword in first:
            ds[keyword] = first[keyword]
    ds.Modality = "DOC"
    ds.SeriesInstanceUID = derived_uid(identity.series_instance_uid, "report-pdf-series")
    ds.SeriesNumber = PDF_SERIES_NUMBER
    ds.SeriesDescription = (MOCK_PAGE_SERIES_DESCRIPTION if draft.is_mock
                            else PAGE_SERIES_DESCRIPTION).replace("PAGE", "PDF")
    ds.InstanceNumber = identity.instance_number
    ds.ContentDate, ds.ContentTime = first.ContentDate, first.ContentTime
    ds.AcquisitionDateTime = f"{first.ContentDate}{first.ContentTime}"
    ds.DocumentTitle = ("MOCK " if draft.is_mock else "") + "AI research draft - not for " \
        "clinical use"
    ds.ConceptNameCodeSequence = []
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocument = pdf + (b"\0" if len(pdf) % 2 else b"")
    ds.EncapsulatedDocumentLength = len(pdf)
    ds.SourceInstanceSequence = first.SourceImageSequence  # the source radiograph
    meta = Dataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
    ds.file_meta = FileMetaDataset(meta)
    return ds
