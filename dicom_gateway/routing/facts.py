"""The facts of one instance that routing conditions read: its tags by keyword, and
the virtual fields (``PatientAgeYears``, ``CallingAE``, ``CalledAE``).

A missing or empty value is ``None`` (missing), never an empty string: a condition on a
missing tag is then false whatever its operator.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any

from dicom_gateway.routing.conditions import Values

VIRTUAL_FIELDS = ("PatientAgeYears", "CallingAE", "CalledAE")

_AGE = re.compile(r"^\s*(\d{1,3})\s*([DWMY])\s*$", re.IGNORECASE)
_DAYS_PER = {"D": 1.0, "W": 7.0, "M": 365.25 / 12, "Y": 365.25}


def age_years(patient_age: str, birth_date: str, study_date: str) -> float | None:
    """Age in years from PatientAge (``007Y``, ``006M``, ``010W``, ``005D``), else the
    completed years between PatientBirthDate and StudyDate; None when neither says."""
    m = _AGE.match(patient_age or "")
    if m:
        number, unit = int(m.group(1)), m.group(2).upper()
        return float(number) if unit == "Y" else number * _DAYS_PER[unit] / 365.25
    born, studied = _date(birth_date), _date(study_date)
    if born is None or studied is None or studied < born:
        return None
    years = studied.year - born.year - ((studied.month, studied.day) < (born.month, born.day))
    return float(years)


def _date(text: str) -> date | None:
    text = (text or "").strip()
    if not re.fullmatch(r"\d{8}", text):
        return None
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        return None


def _text(value: Any) -> str | None:
    """A single element value as text; None for values a condition cannot compare."""
    if value is None or isinstance(value, bytes | bytearray):
        return None
    text = str(value).strip()
    return text or None


@dataclass
class Facts:
    """What a condition can see of one instance: its header (a pydicom Dataset or any
    mapping-like ``get``) and the association's AE titles.  Values are read on demand."""

    dataset: Any
    calling_ae: str = ""
    called_ae: str = ""

    def values(self, name: str) -> Values:
        if name == "CallingAE":
            return _present((self.calling_ae,))
        if name == "CalledAE":
            return _present((self.called_ae,))
        if name == "PatientAgeYears":
            age = age_years(*(str(self._raw(k) or "") for k in
                              ("PatientAge", "PatientBirthDate", "StudyDate")))
            return None if age is None else (repr(age),)
        raw = self._raw(name)
        if raw is None:
            return None
        if isinstance(raw, str | bytes | bytearray) or not isinstance(raw, Iterable):
            return _present((_text(raw),))
        if _is_sequence(raw):  # a sequence: present, nothing to compare
            return ("",) if any(True for _ in raw) else None
        return _present(tuple(_text(v) for v in raw))

    def _raw(self, name: str) -> Any:
        try:
            value = self.dataset.get(name)
        except Exception:  # noqa: BLE001 - a value pydicom cannot decode is missing
            return None
        return getattr(value, "value", value)


def _is_sequence(raw: Any) -> bool:
    return type(raw).__name__ == "Sequence"


def _present(values: Iterable[str | None]) -> Values:
    kept = tuple(v for v in values if v)
    return kept or None
