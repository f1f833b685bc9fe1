"""Where SRs go, parsed from settings text.

One comma-separated list, three kinds of entry:

* ``PACS@10.0.0.5:104``: C-STORE to that AE title, host and port;
* ``reply:104``: C-STORE back to the AE that sent the study (its calling AE title, at the
  address its association came from, on the given port);
* ``http(s)://host/dicom-web``: DICOMweb STOW-RS to that service root.

A ``/comprehensive`` suffix on a C-STORE entry sends the same content as a
Comprehensive SR instead of a Comprehensive 3D SR, for PACS that do not accept the
latter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SR_3D = "3d"
SR_COMPREHENSIVE = "comprehensive"

_DEST = re.compile(r"^(?P<ae>[^@\s/]{1,16})@(?P<host>[^:\s/]+):(?P<port>\d{1,5})"
                   r"(?:/(?P<cls>comprehensive|3d))?$")
_REPLY = re.compile(r"^reply:(?P<port>\d{1,5})(?:/(?P<cls>comprehensive|3d))?$")


@dataclass(frozen=True)
class Destination:
    """An SR receiver: a C-STORE SCP (fixed or the sender), or a STOW-RS service."""

    ae_title: str = ""
    host: str = ""
    port: int = 0
    kind: str = "dicom"  # dicom | reply | stow
    url: str = ""
    sr_class: str = SR_3D

    def __str__(self) -> str:
        suffix = f"/{self.sr_class}" if self.sr_class != SR_3D else ""
        if self.kind == "stow":
            return self.url
        if self.kind == "reply":
            return f"reply:{self.port}{suffix}"
        return f"{self.ae_title}@{self.host}:{self.port}{suffix}"

    def resolved(self, calling_ae: str, peer: str) -> Destination:
        """A reply destination made concrete for one study's sender."""
        if self.kind != "reply":
            return self
        host = peer.rsplit(":", 1)[0] if ":" in peer else peer
        return Destination(calling_ae, host, self.port, "dicom", "", self.sr_class)


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
            out.append(Destination(kind="stow", url=part.rstrip("/")))
            continue
        reply = _REPLY.match(part)
        if reply:
            out.append(Destination(port=_port(reply["port"], part), kind="reply",
                                   sr_class=reply["cls"] or SR_3D))
            continue
        m = _DEST.match(part)
        if not m:
            raise ValueError(f"destination {part!r} is not AE@host:port[/comprehensive], "
                             "reply:PORT or an http(s) DICOMweb URL")
        out.append(Destination(m["ae"], m["host"], _port(m["port"], part),
                               sr_class=m["cls"] or SR_3D))
    return tuple(out)
