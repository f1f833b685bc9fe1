"""UID checks and derivations.

UIDs arrive from the network and become path components, so they are validated
against PS3.5 section 9 before use.  UIDs we create for SRs are derived from the job
and its version, so a task that runs twice writes the same SR, never a second one.
"""

from __future__ import annotations

import hashlib
import re

_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))+$")


class InvalidUID(ValueError):
    """A UID that does not follow PS3.5 9.1 (and so must never reach a file name)."""


def is_valid_uid(value: object) -> bool:
    return isinstance(value, str) and len(value) <= 64 and bool(_UID.match(value))


def require_uid(value: object, what: str) -> str:
    if not is_valid_uid(value):
        raise InvalidUID(f"{what} {value!r} is not a valid DICOM UID")
    assert isinstance(value, str)
    return value


def derived_uid(*parts: str) -> str:
    """A stable ``2.25.`` UID from a hash of ``parts`` (same parts, same UID).

    pydicom's ``generate_uid(prefix=None)`` ignores its entropy sources and returns a
    random UUID, so the 128-bit integer is taken from a SHA-256 here instead (PS3.5 B.2).
    """
    digest = hashlib.sha256("\x1f".join(("cxr-reason-gateway", *parts)).encode()).digest()
    return f"2.25.{int.from_bytes(digest[:16], 'big')}"
