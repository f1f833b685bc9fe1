"""The ``[destination_sets]`` a rule may send to: ``name -> "AE@host:port,..."``, each
checked with ``dicom_gateway.transfer.destinations.parse_destinations``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dicom_gateway.routing.rules import MAX_NAME_CHARS
from dicom_gateway.transfer.destinations import Destination, parse_destinations


def parse_destination_sets(value: Any) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """The valid sets (canonical comma-list text) and (name, problem) for the others.  A
    set may be a comma list, a list of entries, or the settings' parsed destinations."""
    good: dict[str, str] = {}
    bad: list[tuple[str, str]] = []
    if not isinstance(value, Mapping):
        return good, [("", "destination_sets must be a table of name = \"AE@host:port,...\"")]
    for name, text in value.items():
        if isinstance(text, list | tuple) and all(isinstance(t, str | Destination)
                                                  for t in text):
            text = ",".join(str(t) for t in text)
        if len(str(name)) > MAX_NAME_CHARS:
            bad.append((str(name), f"destination set name longer than {MAX_NAME_CHARS} "
                                   "characters"))
            continue
        if not isinstance(text, str):
            bad.append((str(name), f"destination set {name!r}: must be a comma list string"))
            continue
        try:
            dests = parse_destinations(text)
        except ValueError as exc:
            bad.append((str(name), f"destination set {name!r}: {exc}"))
            continue
        if not dests:
            bad.append((str(name), f"destination set {name!r} is empty"))
            continue
        good[str(name)] = ",".join(str(d) for d in dests)
    return good, bad
