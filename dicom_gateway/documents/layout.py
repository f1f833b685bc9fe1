"""The research draft laid out as pages: what a person sees first.

Page 1 holds the model-input image and the labels found, then the impression, the
findings by the template's sub-headings, the other sections and the reasoning flow on,
continued on further pages (``MAX_PAGES`` at most, then a pointer to the SR).  What a page
must never do is look like a signed report: every page carries ``marks.BANNER`` at its
top and bottom, a mock result says ``marks.MOCK_BANNER`` in a red band under it on every
page, and the footer names the algorithm (name, version with its revision) and the draft's version.

Fonts: Pillow's own scalable font (``ImageFont.load_default(size=...)``, Pillow >= 10.1),
so nothing outside the Python packages is needed to draw.  One layout, two surfaces
(``dicom_gateway.documents.surface``): ``render_pages`` paints images, ``render_pdf``
writes the same pages as a PDF whose text is text.  No DICOM here:
``dicom_gateway.documents.page`` and ``.pdf`` file them as Secondary Capture instances and
an Encapsulated PDF.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, replace

from PIL import Image, ImageFont

from dicom_gateway.documents.draft import DraftReport
from dicom_gateway.documents.marks import BANNER, DISCLAIMER, MOCK_BANNER, PRODUCT
from dicom_gateway.documents.surface import PdfDocument, PillowSurface, Surface
from dicom_gateway.documents.surface import font as _font

__all__ = ["HEIGHT", "MAX_PAGES", "WIDTH", "render_pages", "render_pdf"]
MAX_PAGES = 10  # 5.8 MB each (uncompressed RGB, what every receiver takes): a runaway
# reasoning trace ends with a pointer to the SR, not 100 pages
MAX_LINE_CHARS = 600  # no line is wider than 2 px a glyph over the text width
# what the whole set lays out, at most: far more than MAX_PAGES hold (about 3,500
# characters a page at the smallest size), so what is cut off never reaches a page anyway
MAX_LAYOUT_CHARS = MAX_PAGES * 8000

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


@dataclass(frozen=True)
class _Line:
    """One line of laid-out text: what, how big, which colour, how far in."""

    text: str
    size: int
    colour: tuple[int, int, int] = INK
    indent: int = 0
    gap_before: int = 0


_ADVANCES: dict[int, dict[str, float]] = {}  # font size -> character -> width, px


def _fitting_prefix(font: ImageFont.FreeTypeFont, size: int, word: str, width: int) -> int:
    """How many leading characters of ``word`` fit in ``width`` pixels (at least one; all
    of it when it fits).

    Widths of single characters are summed (each measured once per size), then the cut is
    checked with the font itself and moved by the character or two kerning shifts it;
    only the first ``MAX_LINE_CHARS`` characters are ever looked at (no line holds more,
    at 2 px a glyph), so one cut costs the same for a run of 50,000 characters as for a
    run of 200, and an unbroken run wraps in linear time."""
    advances = _ADVANCES.setdefault(size, {})
    head = word[:MAX_LINE_CHARS]
    total, cut = 0.0, 0
    for ch in head:
        w = advances.get(ch)
        if w is None:
            w = advances[ch] = font.getlength(ch)
        if total + w > width:
            break
        total, cut = total + w, cut + 1
    cut = max(1, cut)
    while cut > 1 and font.getlength(head[:cut]) > width:
        cut -= 1
    while cut < len(head) and font.getlength(head[:cut + 1]) <= width:
        cut += 1
    return cut


def _wrap(text: str, size: int, width: int) -> list[str]:
    """Words to lines no wider than ``width`` pixels; a word longer than a line (a UID, a
    model's unspaced run) is cut where it must be, never dropped."""
    font = _font(size)
    out: list[str] = []
    for para in text.splitlines() or [""]:
        line = ""
        for word in para.split():
            while len(word) > 1 and (cut := _fitting_prefix(font, size, word, width)) < len(word):
                if line:  # an unbreakable run: cut it
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
            out += _block(text.strip(), 20, indent=12)
    out += _heading("ALGORITHM")
    out += _block(f"{draft.algorithm.name} (by {draft.algorithm.manufacturer}), version "
                  f"{draft.algorithm.version}", 20, indent=12)
    for param in draft.algorithm.parameters:
        out += _block(param, 18, GREY, indent=24)
    out += _block(DISCLAIMER, 20, indent=0, gap_before=18)
    return out


def _line_height(line: _Line) -> int:
    return line.gap_before + int(line.size * 1.35)


def _banner(surface: Surface, top: int, text: str, fill: tuple[int, int, int],
            ink: tuple[int, int, int], size: int = 38) -> int:
    """A banner line: ``text`` centred in heavy letters between two thick rules of
    ``fill``; returns the y below it.  The letters stand on white, clear of the rules: a
    filled or framed band is what OCR (and so any tool that indexes what a page says)
    skips as a picture."""
    rule = 8
    gap = 10
    surface.rect((EDGE, top + EDGE // 2, WIDTH - EDGE, top + EDGE // 2 + rule), fill=fill)
    y = top + EDGE // 2 + rule + gap
    x = (WIDTH - _font(size).getlength(text)) / 2
    surface.text(x, y, text, size, ink, heavy=True)
    y += int(size * 1.25) + gap
    surface.rect((EDGE, y, WIDTH - EDGE, y + rule), fill=fill)
    return y + rule + EDGE // 2


class _Page:
    """One page being drawn: banners, footer, and a cursor for the text between."""

    def __init__(self, draft: DraftReport, number: int, footer: str,
                 surface: Surface) -> None:
        self.surface = surface
        self.number = number
        y = _banner(surface, 0, BANNER, BANNER_EDGE, INK)
        if draft.is_mock:
            y = _banner(surface, y - EDGE // 2, MOCK_BANNER, MOCK_FILL, MOCK_FILL, 32)
        self.top = y + 18
        self.y = self.top
        self.footer = footer
        self.bottom = HEIGHT - FOOTER_BANNER - 50

    def fits(self, line: _Line, reserve: int = 0) -> bool:
        return self.y + _line_height(line) + reserve <= self.bottom

    def put(self, line: _Line) -> None:
        self.y += line.gap_before
        self.surface.text(MARGIN + line.indent, self.y, line.text, line.size, line.colour)
        self.y += int(line.size * 1.35)

    def finish(self, total: int) -> None:
        self.surface.text(MARGIN, self.bottom + 12, f"{self.footer}   |   page {self.number} "
                          f"of {total}", 18, GREY)
        _banner(self.surface, HEIGHT - FOOTER_BANNER, BANNER, BANNER_EDGE, INK, 30)


def _first_page(page: _Page, draft: DraftReport, model_input: bytes | None,
                title: str) -> None:
    """Title, status, and the model-input image with the labels beside it."""
    for line in _block(title, 32, ACCENT):
        page.put(line)
    for line in _block(draft.status_sentence, 22, gap_before=6):
        page.put(line)
    top = page.y + 16
    box = (MARGIN, top, MARGIN + IMAGE_BOX, top + IMAGE_BOX)
    page.surface.rect(box, outline=GREY, width=2)
    if model_input:
        with Image.open(io.BytesIO(model_input)) as src:
            shown = src.convert("RGB")
        shown.thumbnail((IMAGE_BOX - 8, IMAGE_BOX - 8))
        page.surface.picture(shown, MARGIN + (IMAGE_BOX - shown.width) // 2,
                             top + (IMAGE_BOX - shown.height) // 2)
    else:
        page.surface.text(MARGIN + 20, top + IMAGE_BOX // 2, "model input not stored", 22,
                          GREY)
    page.surface.text(MARGIN, top + IMAGE_BOX + 6, "Model input, as the model saw it", 18,
                      GREY)
    x = MARGIN + IMAGE_BOX + 36
    width = WIDTH - MARGIN - x
    y = top
    heading = "LABELS FOUND (MOCK, not findings)" if draft.is_mock else \
        "LABELS FOUND (unverified)"
    for text in _wrap(heading, 28, width):
        page.surface.text(x, y, text, 28, ACCENT)
        y += 38
    labels = list(draft.labels) or ["None asserted"]
    for label in labels:
        for text in _wrap(label, 34, width - 20):
            page.surface.text(x + 20, y + 8, text, 34, INK if draft.labels else GREY)
            y += 48
    page.y = max(y, top + IMAGE_BOX + 30) + 10


def _within_budget(draft: DraftReport) -> DraftReport:
    """The draft with its texts cut, in reading order, to ``MAX_LAYOUT_CHARS`` in all:
    laying out costs what the text is long, and no page would show the rest."""
    left = MAX_LAYOUT_CHARS

    def take(text: str) -> str:
        nonlocal left
        kept = text[:max(0, left)]
        left -= len(kept)
        return kept

    sections = tuple((h, tuple(t for t in (take(i) for i in items) if t))
                     for h, items in draft.report_sections)
    return replace(draft, report_sections=sections, notes=tuple(take(n) for n in draft.notes),
                   answer_text=take(draft.answer_text), reasoning=take(draft.reasoning),
                   report_reasoning=take(draft.report_reasoning))


def _lay_out(draft: DraftReport, model_input: bytes | None, version: int, sr_uid: str,
             supersedes: int | None, new_surface: Callable[[], Surface]) -> None:
    """The draft on pages of ``new_surface()`` (page 1: image and labels; the rest flows)."""
    title = "Chest X-ray: AI research draft, unverified"
    if draft.is_mock:
        title = "MOCK chest X-ray draft: wiring test, no reading"
    footer = f"{draft.algorithm.name}  {draft.algorithm.version}  |  draft v{version}"
    flow = _flow(_within_budget(draft))
    if supersedes:
        flow = _block(f"This is version {version} of the draft; it supersedes version "
                      f"{supersedes}.", 20, GREY, gap_before=4) + flow
    flow += _block(f"Rendered from the SR {sr_uid}.", 16, GREY, gap_before=12)
    pages = [_Page(draft, 1, footer, new_surface())]
    _first_page(pages[0], draft, model_input, title)
    limit = _Line(f"... the rest is in the SR (this rendering stops at {MAX_PAGES} pages).",
                  20, GREY)
    for line in flow:
        last = len(pages) == MAX_PAGES  # keep room for the line that says where the rest is
        if not pages[-1].fits(line, reserve=_line_height(limit) if last else 0):
            if last:
                pages[-1].put(limit)
                break
            pages.append(_Page(draft, len(pages) + 1, footer, new_surface()))
            pages[-1].put(_Line(f"(continued from page {len(pages) - 1})", 18, GREY))
            line = _Line(line.text, line.size, line.colour, line.indent, 0)
        pages[-1].put(line)
    for page in pages:
        page.finish(len(pages))


def render_pages(draft: DraftReport, model_input: bytes | None, *, version: int,
                 sr_uid: str, supersedes: int | None = None) -> list[Image.Image]:
    """The draft drawn as page images."""
    surfaces: list[PillowSurface] = []

    def new_surface() -> PillowSurface:
        surfaces.append(PillowSurface(WIDTH, HEIGHT))
        return surfaces[-1]

    _lay_out(draft, model_input, version, sr_uid, supersedes, new_surface)
    return [s.image for s in surfaces]


def render_pdf(draft: DraftReport, model_input: bytes | None, *, version: int,
               sr_uid: str, supersedes: int | None = None) -> bytes:
    """The same pages as one PDF, its text as text (searchable, copyable)."""
    doc = PdfDocument(WIDTH, HEIGHT, title=("MOCK " if draft.is_mock else "") + BANNER,
                      author=PRODUCT,
                      subject=f"{draft.algorithm.name} {draft.algorithm.version}")
    _lay_out(draft, model_input, version, sr_uid, supersedes, doc.new_page)
    return doc.output()
