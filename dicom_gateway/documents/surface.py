"""Where the research draft's pages are drawn: a Pillow image, or a PDF page with text.

``dicom_gateway.documents.layout`` decides once where every line, banner, rule and
picture goes, in pixels of a US-letter page at 144 dpi; a surface puts them there.
``PillowSurface`` paints them into an RGB image (the Secondary Capture pages).
``PdfSurface`` writes them into a page of one ``fpdf2`` document as PDF text, in the
same font at the same place (1 px = 0.5 pt), so the PDF looks like the pages and a reader
can search and copy what it says. Both use the font the layout measures with: Pillow's
own scalable font (Aileron, CC0), whose bytes fpdf2 embeds as a subset.
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Protocol

from fpdf import FPDF
from fpdf.enums import TextMode
from PIL import Image, ImageDraw, ImageFont

__all__ = ["PdfDocument", "PillowSurface", "Surface", "font", "font_bytes"]

RGB = tuple[int, int, int]
PT_PER_PX = 0.5  # 144 dpi pixels in 72 dpi points
FONT_FAMILY = "Aileron"


@cache
def font(size: int) -> ImageFont.FreeTypeFont:
    """The layout's font at ``size`` px: what every width is measured with."""
    loaded = ImageFont.load_default(size=size)
    if not isinstance(loaded, ImageFont.FreeTypeFont):  # Pillow without FreeType
        raise RuntimeError("Pillow was built without FreeType: the report pages need it")
    return loaded


def font_bytes() -> bytes:
    """The TrueType bytes behind Pillow's scalable default font.

    Pillow (10.1 .. 13.x, checked here) builds that font from an in-memory TTF and keeps
    the stream as ``FreeTypeFont.path``; the PDF must embed the same face, so a Pillow
    that keeps it another way fails here, loudly, not with a PDF in another font."""
    stream = font(20).path
    if not isinstance(stream, io.BytesIO):
        raise RuntimeError("Pillow's default font no longer keeps its TrueType stream as "
                           f".path (got {type(stream).__name__}); see surface.font_bytes")
    return stream.getvalue()


class Surface(Protocol):
    """What the layout draws with (coordinates in px; text anchored at its ascender)."""

    def text(self, x: float, y: float, text: str, size: int, colour: RGB,
             heavy: bool = False) -> None: ...

    def rect(self, box: Sequence[float], fill: RGB | None = None,
             outline: RGB | None = None, width: int = 0) -> None: ...

    def picture(self, image: Image.Image, x: int, y: int) -> None: ...


class PillowSurface:
    """A page painted into an RGB image."""

    def __init__(self, width: int, height: int) -> None:
        self.image = Image.new("RGB", (width, height), (255, 255, 255))
        self._draw = ImageDraw.Draw(self.image)

    def text(self, x: float, y: float, text: str, size: int, colour: RGB,
             heavy: bool = False) -> None:
        self._draw.text((x, y), text, font=font(size), fill=colour,
                        stroke_width=1 if heavy else 0, stroke_fill=colour)

    def rect(self, box: Sequence[float], fill: RGB | None = None,
             outline: RGB | None = None, width: int = 0) -> None:
        x0, y0, x1, y1 = box
        self._draw.rectangle((x0, y0, x1, y1), fill=fill, outline=outline, width=width)

    def picture(self, image: Image.Image, x: int, y: int) -> None:
        self.image.paste(image, (x, y))


class PdfDocument:
    """One PDF of letter pages; ``new_page()`` gives each page's surface."""

    def __init__(self, width: int, height: int, *, title: str, author: str, subject: str,
                 created: datetime | None = None) -> None:
        self.width, self.height = width, height
        pdf = FPDF(unit="pt", format=(width * PT_PER_PX, height * PT_PER_PX))
        pdf.set_auto_page_break(False)
        pdf.set_margin(0)
        with tempfile.TemporaryDirectory() as folder:  # fpdf2 reads fonts from a file
            path = Path(folder) / f"{FONT_FAMILY}.ttf"
            path.write_bytes(font_bytes())
            pdf.add_font(FONT_FAMILY, fname=str(path))
        pdf.set_title(title)
        pdf.set_author(author)
        pdf.set_creator(author)
        pdf.set_subject(subject)
        pdf.set_creation_date(created or datetime.now(UTC))
        self._pdf = pdf

    def new_page(self) -> PdfSurface:
        self._pdf.add_page()
        return PdfSurface(self._pdf, self._pdf.page)

    def output(self) -> bytes:
        """The document, ending in a line break after ``%%EOF`` (see ``pdf.py``)."""
        data = bytes(self._pdf.output())
        return data if data.endswith(b"\n") else data + b"\n"


class PdfSurface:
    """A page of a ``PdfDocument``: text as text, rules as filled rectangles.  The layout
    finishes every page (footer, page count) after the last one is added, so each call
    first goes back to its own page (fpdf2 writes where ``FPDF.page`` points)."""

    def __init__(self, pdf: FPDF, number: int) -> None:
        self._doc = pdf
        self._number = number

    @property
    def _pdf(self) -> FPDF:
        self._doc.page = self._number
        return self._doc

    def text(self, x: float, y: float, text: str, size: int, colour: RGB,
             heavy: bool = False) -> None:
        if not text:
            return
        pdf = self._pdf
        pdf.set_font(FONT_FAMILY, size=size * PT_PER_PX)
        pdf.set_text_color(*colour)
        if heavy:  # as Pillow's 1 px stroke: fill and outline the letters
            pdf.set_draw_color(*colour)
            pdf.set_line_width(PT_PER_PX)
            pdf.text_mode = TextMode.FILL_STROKE
        ascent, _ = font(size).getmetrics()
        pdf.text(x * PT_PER_PX, (y + ascent) * PT_PER_PX, text)
        pdf.text_mode = TextMode.FILL

    def rect(self, box: Sequence[float], fill: RGB | None = None,
             outline: RGB | None = None, width: int = 0) -> None:
        x0, y0, x1, y1 = (v * PT_PER_PX for v in box)
        if fill is not None:
            self._pdf.set_fill_color(*fill)
            self._pdf.rect(x0, y0, x1 - x0, y1 - y0, style="F")
        if outline is not None and width:
            self._pdf.set_draw_color(*outline)
            self._pdf.set_line_width(width * PT_PER_PX)
            inset = width * PT_PER_PX / 2  # Pillow draws an outline inside the box
            self._pdf.rect(x0 + inset, y0 + inset, x1 - x0 - 2 * inset, y1 - y0 - 2 * inset,
                           style="D")

    def picture(self, image: Image.Image, x: int, y: int) -> None:
        self._pdf.image(image, x * PT_PER_PX, y * PT_PER_PX, w=image.width * PT_PER_PX,
                        h=image.height * PT_PER_PX)
