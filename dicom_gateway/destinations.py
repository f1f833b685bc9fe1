"""Where SRs go: parsed from settings text like ``PACS@10.0.0.5:104``."""

from __future__ import annotations

import re
from dataclasses import dataclass

_DEST = re.compile(r"^(?P<ae>[^@\s]{1,16})@(?P<host>[^:\s]+):(?P<port>\d{1,5})$")


@dataclass(frozen=True)
class Destination:
    """A C-STORE SCP that receives our SRs."""

    ae_title: str
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


def parse_destinations(text: str) -> tuple[Destination, ...]:
    """Parse a comma list of ``AE@host:port``; raise ValueError naming the bad entry."""
    out = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        m = _DEST.match(part)
        if not m or not 0 < int(m["port"]) < 65536:
            raise ValueError(f"destination {part!r} is not AE@host:port")
        out.append(Destination(m["ae"], m["host"], int(m["port"])))
    return tuple(out)
