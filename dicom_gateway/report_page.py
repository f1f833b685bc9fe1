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
Fonts: Pillow's own scalable font (``ImageFont.load_default(size=...)``, Pillow >= 10.1),
so nothing outside the Python packages is needed to draw.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import highdicom as hd
import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pydicom import Dataset, FileMetaDataset

from dicom_gateway.sr import (
    COMPLETION_DESCRIPTION,
    SRBuildError,
    processing_equipment,
    source_with_type2,
)
from dicom_gateway.sr_draft import DISCLAIMER, MOCK_DISCLAIMER, DraftReport, SRIdentity
from dicom_gateway.uids import derived_uid

__all__ = ["BANNER", "ENCAPSULATED_PDF", "MOCK_BANNER", "PAGE_SERIES_NUMBER", "build_pages",
           "build_pdf", "page_identity", "render_pages"]

BANNER = "AI DRAFT - RESEARCH ONLY - NOT FOR CLINICAL USE"
MOCK_BANNER = "MOCK - NO MODEL READ THIS IMAGE - NOTHING HERE IS A FINDING"
PAGE_SERIES_DESCRIPTION = "AI DRAFT PAGE - RESEARCH ONLY - NOT FOR CLINICAL USE"
MOCK_PAGE_SERIES_DESCRIPTION = "MOCK AI DRAFT PAGE - RESEARCH ONLY - NOT CLINICAL"
PAGE_SERIES_NUMBER = 9902
PDF_SERIES_NUMBER = 9903
ENCAPSULATED_PDF = "1.2.840.10008.5.1.4.1.1.104.1"
MAX_PAGES = 10  # 5.8 MB each (uncompressed RGB, what every receiver takes): a runaway
# reasoning trace ends with a pointer to the SR, not 100 pages

# US letter at 144 dpi: large enough for OCR and for a viewer's "fit to window".
WIDTH, HEIGHT = 1224, 1584
MARGIN = 56
IMAGE_BOX = 520
EDGE = 20  # white around the banners
FOOTER_BANNER = 20 + 8 + 10 + int(30 * 1.25) + 10 + 8 + 10  # its height

INK = (0, 0, 0)
GREY = (90, 90, 90)
ACCENT = (0, 70, 140)
BANNER_EDGE = (200, 0, 0)
MOCK_FILL = (200, 0, 0)
WHITE = (255, 255, 255)


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


@dataclass(frozen=True)
class _Line:
    """One line of laid-out text: what, how big, which colour, how far in."""

    text: str
    size: int
    colour: tuple[int, int, int] = INK
    indent: int = 0
    gap_before: int = 0


def _wrap(text: str, size: int, width: int) -> list[str]:
    """Words to lines no wider than ``width`` pixels; a word longer than a line (a UID)
    is cut where it must be, never dropped."""
    font = _font(size)
    out: list[str] = []
    for para in text.splitlines() or [""]:
        line = ""
        for word in para.split():
            while font.getlength(word) > width:  # an unbreakable run: cut it
                cut = len(word)
                while cut > 1 and font.getlength(word[:cut]) > width:
                    cut -= 1
                if line:
                    out.append(line)
                    line = ""
                out.append(word[:cut])
                word = word[cut:]
            candidate = f"{line} {word}" if line else word
            if font.getlength(candidate) <= width:
                line = candidate
            else:
                out.append(line)
                line = word
        out.append(line)
    return out


def _block(text: str, size: int = 22, colour: tuple[int, int, int] = INK, indent: int = 0,
           gap_before: int = 0, width: int = WIDTH - 2 * MARGIN) -> list[_Line]:
    lines = _wrap(text, size, width - indent)
    return [_Line(t, size, colour, indent, gap_before if i == 0 else 0)
            for i, t in enumerate(lines)]


def _heading(text: str) -> list[_Line]:
    return [_Line(text, 28, ACCENT, 0, 22)]


def _split_item(item: str) -> tuple[str, str]:
    """("Heart", "Enlarged heart.") from a findings item with a sub-heading."""
    name, sep, rest = item.partition(":")
    if sep and 0 < len(name) <= 60 and name[:1].isupper():
        return name.strip(), rest.strip()
    return "", item


def _flow(draft: DraftReport) -> list[_Line]:
    """Everything after page 1's image: impression, findings by sub-heading, the other
    sections, notes, reasoning, algorithm identity; in the order a reader wants them."""
    sections = dict[str, list[str]]()
    order: list[str] = []
    for heading, items in draft.report_sections:
        if heading not in sections:
            order.append(heading)
        sections.setdefault(heading, []).extend(items)
    out: list[_Line] = []
    out += _heading("IMPRESSION")
    impression = sections.get("IMPRESSION") or []
    if impression:
        for n, item in enumerate(impression, 1):
            out += _block(f"{n}. {item}", 24, indent=12, gap_before=4)
    else:
        out += _block("No impression: " + (
            "the report was not requested (the first answer was not a reading)."
            if not draft.report_text else "the report has no IMPRESSION section."),
            22, GREY, indent=12)
    findings = sections.get("FINDINGS") or []
    if findings:
        out += _heading("FINDINGS")
        for item in findings:
            name, text = _split_item(item)
            if name:
                out += _block(name, 22, ACCENT, indent=12, gap_before=8)
                out += _block(text or "(nothing written)", 22, indent=36)
            else:
                out += _block(text, 22, indent=12, gap_before=8)
    for heading in order:
        if heading in ("IMPRESSION", "FINDINGS"):
            continue
        title = heading or "Report text before the first heading"
        out += _block(title, 22, ACCENT, gap_before=14)
        for item in sections[heading]:
            out += _block(item, 22, indent=24)
    if draft.notes or draft.report_truncated:
        out += _heading("NOTES")
        for note in draft.notes:
            out += _block(note, 20, indent=12, gap_before=4)
        if draft.report_truncated:
            out += _block("The structured report was cut off at its token limit; the "
                          "report above is incomplete.", 20, indent=12, gap_before=4)
    if draft.status == "refused" and draft.answer_text.strip():
        out += _heading("WHAT THE MODEL SAID")
        out += _block(draft.answer_text.strip(), 22, indent=12)
    for title, text in (("REASONING (findings turn)", draft.reasoning),
                        ("REASONING (report turn)", draft.report_reasoning)):
        if text.strip():
            out += _heading(title)
            # more than MAX_PAGES can hold is never drawn: not laid out either
            out += _block(text.strip()[:MAX_PAGES * 5000], 20, indent=12)
    out += _heading("ALGORITHM")
    out += _block(f"{draft.algorithm.name} (by {draft.algorithm.manufacturer}), version "
                  f"{draft.algorithm.version}", 20, indent=12)
    for param in draft.algorithm.parameters:
        out += _block(param, 18, GREY, indent=24)
    out += _block(DISCLAIMER, 20, indent=0, gap_before=18)
    return out


def _line_height(line: _Line) -> int:
    return line.gap_before + int(line.size * 1.35)


def _banner(draw: ImageDraw.ImageDraw, top: int, text: str, fill: tuple[int, int, int],
            ink: tuple[int, int, int], size: int = 38) -> int:
    """A banner line: ``text`` centred in heavy letters between two thick rules of
    ``fill``; returns the y below it.  The letters stand on white, clear of the rules: a
    filled or framed band is what OCR (and so any tool that indexes what a page says)
    skips as a picture."""
    rule = 8
    gap = 10
    draw.rectangle((EDGE, top + EDGE // 2, WIDTH - EDGE, top + EDGE // 2 + rule), fill=fill)
    y = top + EDGE // 2 + rule + gap
    font = _font(size)
    x = (WIDTH - font.getlength(text)) / 2
    draw.text((x, y), text, font=font, fill=ink, stroke_width=1, stroke_fill=ink)
    y += int(size * 1.25) + gap
    draw.rectangle((EDGE, y, WIDTH - EDGE, y + rule), fill=fill)
    return y + rule + EDGE // 2


class _Page:
    """One page being drawn: banners, footer, and a cursor for the text between."""

    def __init__(self, draft: DraftReport, number: int, footer: str) -> None:
        self.image = Image.new("RGB", (WIDTH, HEIGHT), WHITE)
        self.draw = ImageDraw.Draw(self.image)
        self.number = number
        y = _banner(self.draw, 0, BANNER, BANNER_EDGE, INK)
        if draft.is_mock:
            y = _banner(self.draw, y - EDGE // 2, MOCK_BANNER, MOCK_FILL, MOCK_FILL, 32)
        self.top = y + 18
        self.y = self.top
        self.footer = footer
        self.bottom = HEIGHT - FOOTER_BANNER - 50

    def fits(self, line: _Line, reserve: int = 0) -> bool:
        return self.y + _line_height(line) + reserve <= self.bottom

    def put(self, line: _Line) -> None:
        self.y += line.gap_before
        self.draw.text((MARGIN + line.indent, self.y), line.text, font=_font(line.size),
                       fill=line.colour)
        self.y += int(line.size * 1.35)

    def finish(self, total: int) -> Image.Image:
        font = _font(18)
        self.draw.text((MARGIN, self.bottom + 12), f"{self.footer}   |   page {self.number} "
                       f"of {total}", font=font, fill=GREY)
        _banner(self.draw, HEIGHT - FOOTER_BANNER, BANNER, BANNER_EDGE, INK, 30)
        return self.image


def _first_page(page: _Page, draft: DraftReport, model_input: bytes | None,
                title: str) -> None:
    """Title, status, and the model-input image with the labels beside it."""
    for line in _block(title, 32, ACCENT):
        page.put(line)
    for line in _block(draft.status_sentence, 22, gap_before=6):
        page.put(line)
    top = page.y + 16
    box = (MARGIN, top, MARGIN + IMAGE_BOX, top + IMAGE_BOX)
    page.draw.rectangle(box, outline=GREY, width=2)
    if model_input:
        with Image.open(io.BytesIO(model_input)) as src:
            shown = src.convert("RGB")
        shown.thumbnail((IMAGE_BOX - 8, IMAGE_BOX - 8))
        page.image.paste(shown, (MARGIN + (IMAGE_BOX - shown.width) // 2,
                                 top + (IMAGE_BOX - shown.height) // 2))
    else:
        page.draw.text((MARGIN + 20, top + IMAGE_BOX // 2), "model input not stored",
                       font=_font(22), fill=GREY)
    page.draw.text((MARGIN, top + IMAGE_BOX + 6), "Model input, as the model saw it",
                   font=_font(18), fill=GREY)
    x = MARGIN + IMAGE_BOX + 36
    width = WIDTH - MARGIN - x
    y = top
    heading = "LABELS FOUND (MOCK, not findings)" if draft.is_mock else \
        "LABELS FOUND (unverified)"
    for text in _wrap(heading, 28, width):
        page.draw.text((x, y), text, font=_font(28), fill=ACCENT)
        y += 38
    labels = list(draft.labels) or ["None asserted"]
    for label in labels:
        for text in _wrap(label, 34, width - 20):
            page.draw.text((x + 20, y + 8), text, font=_font(34),
                           fill=INK if draft.labels else GREY)
            y += 48
    page.y = max(y, top + IMAGE_BOX + 30) + 10


def render_pages(draft: DraftReport, model_input: bytes | None, *, version: int,
                 sr_uid: str, supersedes: int | None = None) -> list[Image.Image]:
    """The draft drawn as pages (page 1: image and labels; the rest flows on)."""
    title = "Chest X-ray: AI research draft, unverified"
    if draft.is_mock:
        title = "MOCK chest X-ray draft: wiring test, no reading"
    footer = f"{draft.algorithm.name}  {draft.algorithm.version}  |  draft v{version}"
    flow = _flow(draft)
    if supersedes:
        flow = _block(f"This is version {version} of the draft; it supersedes version "
                      f"{supersedes}.", 20, GREY, gap_before=4) + flow
    flow += _block(f"Rendered from the SR {sr_uid}.", 16, GREY, gap_before=12)
    pages = [_Page(draft, 1, footer)]
    _first_page(pages[0], draft, model_input, title)
    limit = _Line(f"... the rest is in the SR (this rendering stops at {MAX_PAGES} pages).",
                  20, GREY)
    for line in flow:
        last = len(pages) == MAX_PAGES  # keep room for the line that says where the rest is
        if not pages[-1].fits(line, reserve=_line_height(limit) if last else 0):
            if last:
                pages[-1].put(limit)
                break
            pages.append(_Page(draft, len(pages) + 1, footer))
            pages[-1].put(_Line(f"(continued from page {len(pages) - 1})", 18, GREY))
            line = _Line(line.text, line.size, line.colour, line.indent, 0)
        pages[-1].put(line)
    return [p.finish(len(pages)) for p in pages]


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
