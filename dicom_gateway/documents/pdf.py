"""The rendered report pages as one Encapsulated PDF, for archives and reporting systems
that take documents rather than images: its own series, UIDs from the SR's, the same
identifiers and research-only marks as the pages (``dicom_gateway.documents.page``).

The PDF is the pages' layout written as text (``layout.render_pdf``), not pictures of
them: a reader searches it and copies the structured report into their own.  It ends
in a line break after ``%%EOF``: the value is padded to even length with a NUL, and a
receiver that strips a trailing pad byte (Orthanc's ``/pdf`` drops a last byte that is
not CR or LF) then still serves every byte of the document, at either length.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydicom import Dataset, FileMetaDataset

from dicom_gateway.documents import marks
from dicom_gateway.documents.draft import DraftReport, SRIdentity
from dicom_gateway.documents.layout import render_pdf
from dicom_gateway.documents.series import Kind, series_number
from dicom_gateway.uids import derived_uid

__all__ = ["ENCAPSULATED_PDF", "build_pdf"]

ENCAPSULATED_PDF = "1.2.840.10008.5.1.4.1.1.104.1"


def build_pdf(source: Dataset, draft: DraftReport, identity: SRIdentity,
              pages: Sequence[Dataset], model_input: bytes | None,
              supersedes: int | None = None) -> Dataset:
    """The pages (their header: ``pages``) as one Encapsulated PDF (see the module
    docstring); ``model_input`` and ``supersedes`` as the pages were drawn with."""
    pdf = render_pdf(draft, model_input, version=identity.instance_number,
                     sr_uid=identity.sop_instance_uid, supersedes=supersedes)
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
    ds.SeriesNumber = series_number(Kind.PDF)
    ds.SeriesDescription = marks.series_description(Kind.PDF, draft.is_mock)
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
