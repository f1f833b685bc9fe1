"""Series numbers: every kind of object the gateway files in a study has a series of its
own, so that a viewer's series list tells an SR from an addendum, a page or a PDF.

The numbers sit in the 99xx range, above what modalities use, so a study's acquired
series never collide with ours.  This module is their only owner; a builder asks it.
"""

from __future__ import annotations

import enum

__all__ = ["Kind", "addendum_instance_number", "series_number"]


class Kind(enum.Enum):
    """The objects the gateway derives from a job."""

    SR = "sr"  # the first research-draft SR (and its Comprehensive SR twin)
    PAGE = "page"  # the rendered report pages (Secondary Capture)
    PDF = "pdf"  # the same pages as an Encapsulated PDF
    ADDENDUM = "addendum"  # a follow-up thread's addendum SR


SERIES_NUMBERS = {Kind.SR: 9901, Kind.PAGE: 9902, Kind.PDF: 9903, Kind.ADDENDUM: 9904}
assert len(set(SERIES_NUMBERS.values())) == len(Kind), "every kind its own series"


def series_number(kind: Kind) -> int:
    return SERIES_NUMBERS[kind]


def addendum_instance_number(ordinal: int) -> int:
    """Addenda are numbered in the order they were asked for within their series
    (1, 2, ...), so a viewer lists them in the order a reviewer wrote them."""
    if ordinal < 1:
        raise ValueError(f"an addendum's ordinal starts at 1, not {ordinal}")
    return ordinal
