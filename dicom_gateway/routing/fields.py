"""The field names a routing condition may use: pydicom's keyword dictionary plus the
virtual fields of ``dicom_gateway.routing.facts``.

Apart from the parser and the rule-set builder so that they (and the settings, which
check a rule's shape when they load) import no pydicom: ``check_field`` is the field check
where rules are used (``worker.ingest.routing.rules_of``,
``dicom_gateway.routing.rules_file.check_text``).
"""

from __future__ import annotations

import difflib
from functools import cache

from pydicom.datadict import keyword_dict

from dicom_gateway.routing.conditions import RuleError
from dicom_gateway.routing.facts import VIRTUAL_FIELDS


@cache
def known_fields() -> frozenset[str]:
    """Every keyword a condition may name."""
    return frozenset(keyword_dict) | frozenset(VIRTUAL_FIELDS)


@cache
def _sorted_fields() -> tuple[str, ...]:
    return tuple(sorted(known_fields()))


def check_field(name: str) -> None:
    """RuleError, with the closest keyword, for a name that is no DICOM keyword."""
    fields = known_fields()
    if name in fields:
        return
    by_case = [f for f in _sorted_fields() if f.lower() == name.lower()]
    close = by_case or difflib.get_close_matches(name, _sorted_fields(), n=1, cutoff=0.7)
    raise RuleError(f"unknown tag keyword {name!r}"
                    + (f" (did you mean {close[0]!r}?)" if close else ""))
