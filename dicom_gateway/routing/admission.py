"""Admission: which instance of a study the model sees, and why the others are skipped.

Pure functions over header datasets, so every rule is testable without a server.
The model was trained on frontal chest radiographs; anything else gets a recorded
reason rather than a guess.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydicom import dcmread

CR = "1.2.840.10008.5.1.4.1.1.1"
DX_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"
DX_PROCESSING = "1.2.840.10008.5.1.4.1.1.1.1.1"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
RADIOGRAPH_CLASSES = {CR, DX_PRESENTATION, DX_PROCESSING, SECONDARY_CAPTURE}
RADIOGRAPH_MODALITIES = {"CR", "DX"}
CHEST_BODY_PARTS = {"CHEST", "THORAX", "LUNG", "PORTABLE CHEST"}
CHEST_WORDS = ("CHEST", "THORAX", "CXR", "LUNG", "TORAX")
FRONTAL_VIEWS = {"PA": 0, "AP": 1}
LATERAL_VIEWS = {"LL", "RL", "LAT", "LATERAL", "LLD", "RLD", "LAO", "RAO", "LPO", "RPO"}


@dataclass(frozen=True)
class Candidate:
    """The header facts admission looks at for one instance."""

    sop_instance_uid: str
    sop_class_uid: str
    modality: str
    body_part: str = ""
    view_position: str = ""
    descriptions: str = ""
    presentation_intent: str = ""
    has_pixels: bool = True
    instance_number: int = 0

    @classmethod
    def from_dataset(cls, ds: Any, has_pixels: bool | None = None) -> Candidate:
        descr = " ".join(
            str(ds.get(k, "")) for k in ("StudyDescription", "SeriesDescription", "ProtocolName")
        )
        try:
            number = int(ds.get("InstanceNumber") or 0)
        except (TypeError, ValueError, OverflowError):  # a sender's garbage: no rank from it
            number = 0
        return cls(
            sop_instance_uid=str(ds.SOPInstanceUID),
            sop_class_uid=str(ds.SOPClassUID),
            modality=str(ds.get("Modality", "")).upper(),
            body_part=str(ds.get("BodyPartExamined", "")).strip().upper(),
            view_position=str(ds.get("ViewPosition", "")).strip().upper(),
            descriptions=descr.upper(),
            presentation_intent=str(ds.get("PresentationIntentType", "")).upper(),
            has_pixels=("PixelData" in ds) if has_pixels is None else has_pixels,
            instance_number=number,
        )

    @classmethod
    def from_file(cls, path: Path) -> Candidate:
        """Read the header; large values (the pixels) are deferred, never loaded."""
        return cls.from_dataset(dcmread(path, defer_size=1024))


@dataclass(frozen=True)
class AdmissionDecision:
    admitted: str | None
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def study_reason(self) -> str:
        """Why the study as a whole produced no job (empty when one was admitted)."""
        if self.admitted:
            return ""
        reasons = sorted(set(self.skipped.values()))
        return "no frontal chest radiograph: " + "; ".join(reasons)


def rejection_reason(c: Candidate) -> str | None:
    """Why this instance can never be the model's input, or None if it can."""
    if c.sop_class_uid not in RADIOGRAPH_CLASSES or c.modality not in RADIOGRAPH_MODALITIES:
        return f"not a radiograph (modality {c.modality or 'missing'})"
    if not c.has_pixels:
        return "not an image (no pixel data)"
    if c.body_part:
        if c.body_part not in CHEST_BODY_PARTS:
            return f"not chest (BodyPartExamined {c.body_part})"
    elif not any(w in c.descriptions for w in CHEST_WORDS):
        return "not identified as chest (no BodyPartExamined, no chest in descriptions)"
    if c.view_position in LATERAL_VIEWS:
        return f"lateral view (ViewPosition {c.view_position})"
    if c.view_position not in FRONTAL_VIEWS:
        return f"not a frontal view (ViewPosition {c.view_position or 'missing'})"
    return None


def _rank(c: Candidate) -> tuple[int, int, int, str]:
    processing = 1 if c.presentation_intent == "FOR PROCESSING" else 0
    return (processing, FRONTAL_VIEWS[c.view_position], -c.instance_number, c.sop_instance_uid)


def admit(candidates: Iterable[Candidate]) -> AdmissionDecision:
    """Pick one frontal chest image (for presentation, PA over AP); give every other a reason."""
    skipped: dict[str, str] = {}
    eligible: list[Candidate] = []
    for c in candidates:
        reason = rejection_reason(c)
        if reason:
            skipped[c.sop_instance_uid] = reason
        else:
            eligible.append(c)
    if not eligible:
        return AdmissionDecision(None, skipped)
    eligible.sort(key=_rank)
    best = eligible[0]
    for other in eligible[1:]:
        skipped[other.sop_instance_uid] = (
            f"another frontal image preferred ({best.view_position} {best.sop_instance_uid})"
        )
    return AdmissionDecision(best.sop_instance_uid, skipped)
