"""Where SRs go, parsed from settings text.

One comma-separated list, three kinds of entry:

* ``PACS@10.0.0.5:104``: C-STORE to that AE title, host and port;
* ``reply:104``: C-STORE back to the AE that sent the study (its calling AE title, at the
  address its association came from, on the given port);
* ``http(s)://host/dicom-web``: DICOMweb STOW-RS to that service root.

A ``/comprehensive`` suffix on a C-STORE entry sends the same content as a
Comprehensive SR instead of a Comprehensive 3D SR, for PACS that do not accept the
latter.

What is sent: the SR alone by default; ``/sr+page`` adds the rendered report page(s)
(a Secondary Capture in its own series of the same study, which every viewer shows,
where many show no SR text); ``/page`` sends the page(s) instead of the SR; ``pdf``
adds the same pages as one Encapsulated PDF (``/sr+page+pdf``, ``/sr+pdf``).  The
suffixes combine in any order (``PACS@h:104/comprehensive/sr+page``); a DICOMweb URL
takes them after ``#`` (``https://h/dicom-web#sr+page``), since its path is its own.
``str()`` writes one canonical form (the SR class, then the contents), which is the
name a destination's deliveries are recorded under.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SR_3D = "3d"
SR_COMPREHENSIVE = "comprehensive"
SENDS_SR = "sr"
SENDS_PAGE = "page"
SENDS_BOTH = "sr+page"
SENDS_PDF = "pdf"
_PARTS = (SENDS_SR, SENDS_PAGE, SENDS_PDF)  # the canonical order of a "+" combination

_OPTS = r"(?P<opts>(?:/[a-z0-9+]+)*)"
_DEST = re.compile(r"^(?P<ae>[^@\s/]{1,16})@(?P<host>[^:\s/]+):(?P<port>\d{1,5})" + _OPTS + "$")
_REPLY = re.compile(r"^reply:(?P<port>\d{1,5})" + _OPTS + "$")


def _sends(text: str) -> str | None:
    """"page+sr" -> "sr+page"; None unless every part is sr, page or pdf, each once."""
    parts = text.split("+")
    if not text or len(set(parts)) != len(parts) or not set(parts) <= set(_PARTS):
        return None
    return "+".join(p for p in _PARTS if p in parts)


@dataclass(frozen=True)
class Destination:
    """An SR receiver: a C-STORE SCP (fixed or the sender), or a STOW-RS service."""

    ae_title: str = ""
    host: str = ""
    port: int = 0
    kind: str = "dicom"  # dicom | reply | stow
    url: str = ""
    sr_class: str = SR_3D
    sends: str = SENDS_SR  # sr, page, pdf joined by "+" (canonical order: sr+page+pdf)

    @property
    def wants_sr(self) -> bool:
        return SENDS_SR in self.sends.split("+")

    @property
    def wants_page(self) -> bool:
        return SENDS_PAGE in self.sends.split("+")

    @property
    def wants_pdf(self) -> bool:
        return SENDS_PDF in self.sends.split("+")

    def __str__(self) -> str:
        suffix = f"/{self.sr_class}" if self.sr_class != SR_3D else ""
        suffix += f"/{self.sends}" if self.sends != SENDS_SR else ""
        if self.kind == "stow":
            return self.url + (f"#{self.sends}" if self.sends != SENDS_SR else "")
        if self.kind == "reply":
            return f"reply:{self.port}{suffix}"
        return f"{self.ae_title}@{self.host}:{self.port}{suffix}"

    def resolved(self, calling_ae: str, peer: str) -> Destination:
        """A reply destination made concrete for one study's sender."""
        if self.kind != "reply":
            return self
        host = peer.rsplit(":", 1)[0] if ":" in peer else peer
        return Destination(calling_ae, host, self.port, "dicom", "", self.sr_class,
                           self.sends)


def _options(text: str, entry: str) -> tuple[str, str]:
    """(SR class, what is sent) from an entry's "/..." suffixes, each named once at most."""
    sr_class, sends = "", ""
    for opt in (o for o in text.split("/") if o):
        if opt in (SR_3D, SR_COMPREHENSIVE) and not sr_class:
            sr_class = opt
        elif _sends(opt) and not sends:
            sends = _sends(opt) or ""
        else:
            raise ValueError(f"destination {entry!r}: unknown or repeated option {opt!r} "
                             "(use /comprehensive or /3d, and /sr, /page, /pdf or a + of them)")
    return sr_class or SR_3D, sends or SENDS_SR


def _port(text: str, entry: str) -> int:
    port = int(text)
    if not 0 < port < 65536:
        raise ValueError(f"destination {entry!r}: port out of range")
    return port


def parse_destinations(text: str) -> tuple[Destination, ...]:
    """Parse the comma list; raise ValueError naming the entry that cannot be used."""
    out = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if part.startswith(("http://", "https://")):
            url, _, opts = part.partition("#")
            sends = _sends(opts) if opts else SENDS_SR
            if sends is None:
                raise ValueError(f"destination {part!r}: after '#' comes sr, page, pdf or a "
                                 "+ of them (sr+page)")
            out.append(Destination(kind="stow", url=url.rstrip("/"), sends=sends))
            continue
        reply = _REPLY.match(part)
        if reply:
            sr_class, sends = _options(reply["opts"], part)
            out.append(Destination(port=_port(reply["port"], part), kind="reply",
                                   sr_class=sr_class, sends=sends))
            continue
        m = _DEST.match(part)
        if not m:
            raise ValueError(f"destination {part!r} is not AE@host:port[/comprehensive]"
                             "[/sr+page], reply:PORT or an http(s) DICOMweb URL")
        sr_class, sends = _options(m["opts"], part)
        out.append(Destination(m["ae"], m["host"], _port(m["port"], part),
                               sr_class=sr_class, sends=sends))
    return tuple(out)
