"""Logging for every process: UIDs, never patient data; secrets never in clear.

The gateway's own messages name instances and studies by UID only.  Two libraries can
echo header values: pydicom's value-validation warnings quote the offending value (a
patient name with a stray character, say), and highdicom's errors may too.  pydicom is
therefore kept to errors and its validation warnings are not shown, and text that
carries a source's values (an SR build error) goes through ``redact`` first.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

# Header attributes whose values identify a patient (PS3.15 Annex E, the common ones).
PATIENT_KEYWORDS = ("PatientName", "PatientID", "PatientBirthDate", "OtherPatientIDs",
                    "OtherPatientNames", "PatientAddress", "PatientTelephoneNumbers",
                    "PatientMotherBirthName", "IssuerOfPatientID", "MilitaryRank",
                    "EthnicGroup", "PatientBirthName", "AccessionNumber",
                    "ReferringPhysicianName", "StudyID")
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _errors_only(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.ERROR


def configure(verbose: bool = False, quiet: bool = False) -> None:
    """Root logging for a CLI process; libraries at WARNING, pydicom at ERROR."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO,
        format=FORMAT,
    )
    # httpx says every request at INFO: two lines per study on an openai engine
    for noisy in ("pynetdicom", "alembic", "celery", "kombu", "highdicom", "httpx",
                  "httpcore"):
        logging.getLogger(noisy).setLevel(logging.INFO if verbose else logging.WARNING)
    # fpdf2 warns of every glyph the page font lacks (a model's CJK or emoji), per PDF:
    # the pages show the same gaps, so it is not news to an operator
    logging.getLogger("fpdf").setLevel(logging.INFO if verbose else logging.ERROR)
    # pydicom.config sets its logger back to WARNING when it is first imported, which may
    # come after this (settings load no pydicom): a filter keeps ERROR whatever the level.
    pydicom_log = logging.getLogger("pydicom")
    pydicom_log.setLevel(logging.ERROR)
    if not any(f is _errors_only for f in pydicom_log.filters):
        pydicom_log.addFilter(_errors_only)
    warnings.filterwarnings("ignore", module=r"pydicom(\.|$)")
    warnings.filterwarnings("ignore", module=r"highdicom(\.|$)")


def patient_values(ds: object) -> list[str]:
    """The identifying values of a header, as text, longest first (for ``redact``)."""
    out: set[str] = set()
    for keyword in PATIENT_KEYWORDS:
        value = getattr(ds, "get", lambda _k, _d=None: None)(keyword, None)
        if value in (None, ""):
            continue
        items: Iterable[object] = value if isinstance(value, list | tuple) else [value]
        for item in items:
            text = str(item)
            out.add(text)
            out.update(p for p in text.replace("=", "^").split("^") if len(p) >= 3)
    return sorted((v for v in out if v.strip()), key=len, reverse=True)


def redact(text: str, values: Iterable[str]) -> str:
    """``text`` with each value (longest first, as ``patient_values`` gives them, so a
    name's parts do not break the whole) replaced, before it reaches a log or a job."""
    for value in values:
        text = text.replace(value, "[redacted]")
    return text


def mask_url(url: str) -> str:
    """A database or broker URL with its password replaced by ``***``."""
    if not url or "://" not in url:
        return url
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = (parts.username or "") + ":***"
    return urlunsplit(parts._replace(netloc=f"{user}@{netloc[-1]}"))


def private_umask() -> None:
    """Files and folders this process creates are readable by the service user only."""
    os.umask(0o077)
