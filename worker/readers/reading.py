"""What the reading page shows a reader for one read, and the source image it draws.

"At each step, only information permitted for that condition is visible" (the paper):
under no AI, the image and an editor holding the site's report headings; under labels
only, the model's abnormality list and the reader's own no-AI report to revise; under full
reasoning, the reasoning, the structured report (which the page can copy into the editor)
and the list, with the headings in the editor.  What a page is given is all it can show,
so this module is where the conditions are kept apart; the routes that could show more
ask ``reader_studies.visible``.

The image is the study's source at full resolution through the gateway's own display
chain (``dicom_gateway.imaging.display``), never the model's resized input; for a batch
of pictures (PNG or JPEG) the picture as given.  Decoded sources are kept for a few reads
(``_source``), so moving the window costs one pass and an encode, not a decode.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from dicom_gateway.imaging.display import (
    DisplaySource,
    dicom_file_source,
    picture_source,
)
from worker.store import reader_design as design
from worker.store.db import BatchFile, BatchItem, Instance, Job
from worker.store.reader_studies import ReaderCase, ReaderRead, ReaderStudy, earlier_report

MOCK_NOTE = ("MOCK: these cases carry results of the mock backend (wiring only, not the "
             "model); nothing read here says anything about NV-Reason-CXR")


def template_text(study: ReaderStudy) -> str:
    """The report headings, each with a blank line to write in."""
    return "".join(f"{heading}:\n\n" for heading in study.template.splitlines() if heading)


def _result(job: Job | None) -> dict[str, Any]:
    return json.loads(job.result) if job is not None and job.result else {}


def structured_report(result: dict[str, Any]) -> str:
    """The model's structured report as a reader copies it: its parsed sections, a heading
    line and its items each (the report turn's own reasoning left out); the raw text when
    it did not parse into sections."""
    sections = result.get("report_sections") or []
    if not sections:
        return str(result.get("report_text") or "")
    return "\n".join(f"{sec.get('heading') or ''}:\n" + "\n".join(sec.get("items") or []) + "\n"
                     for sec in sections)


def _model_output(condition: str, result: dict[str, Any]) -> dict[str, Any]:
    """What the model said, cut to what ``condition`` may show."""
    if condition == design.NO_AI:
        return {}
    status = str(result.get("status") or "")
    labels = {"labels": list(result.get("labels") or []), "result_status": status}
    if condition == design.LABELS:
        return labels
    return {**labels, "reasoning": str(result.get("reasoning") or ""),
            "structured_report": structured_report(result)}


def page(session: Session, study: ReaderStudy, read: ReaderRead | None,
         total: int) -> dict[str, Any]:
    """The reading page's view of ``read`` (None: the reader has finished)."""
    base: dict[str, Any] = {"study": study.name, "mock": study.mock, "total": total,
                            "mock_note": MOCK_NOTE if study.mock else ""}
    if read is None:
        return {**base, "stage": "finished", "position": None}
    case = session.get(ReaderCase, read.case_id)
    prefill = (earlier_report(session, read, design.NO_AI) if read.condition == design.LABELS
               else template_text(study))
    stage = "report" if read.reported_at is None else "questions"
    return {
        **base, "stage": stage, "position": read.position,
        "case": case.number if case is not None else None, "condition": read.condition,
        "condition_name": design.CONDITION_NAMES[read.condition],
        "shown_at": read.shown_at, "prefill": prefill,
        "items": [{"code": i.code, "section": i.section, "text": i.text}
                  for i in design.items_for(read.condition)] if stage == "questions" else [],
        "likert": design.LIKERT,
        **_model_output(read.condition, _result(session.get(Job, read.job_id))),
    }


@lru_cache(maxsize=4)
def _source(kind: str, path: str, mtime: float) -> DisplaySource:
    """A decoded source, kept for the next few windows (``mtime``: a file that changed is
    decoded again)."""
    del mtime
    if kind == "dicom":
        return dicom_file_source(Path(path))
    from PIL import Image

    with Image.open(path) as im:
        return picture_source(np.asarray(im.convert("L")))


def source_path(session: Session, job_id: int) -> tuple[str, Path] | None:
    """("dicom" | "picture", where the case's source image is), or None when the gateway
    no longer holds it."""
    job = session.get(Job, job_id)
    if job is None:
        return None
    if job.sop_instance_uid:
        inst = session.scalar(select(Instance).where(
            Instance.sop_instance_uid == job.sop_instance_uid))
        if inst is not None and inst.purged_at is None and Path(inst.path).is_file():
            return "dicom", Path(inst.path)
        return None
    item = session.scalar(select(BatchItem.id).where(BatchItem.job_id == job.id))
    first = session.scalar(select(BatchFile.path).where(BatchFile.item_id == item).order_by(
        BatchFile.id)) if item is not None else None
    return ("picture", Path(first)) if first and Path(first).is_file() else None


def source_image(session: Session, job_id: int) -> DisplaySource | None:
    """The case's source, decoded (ConversionError for one that cannot be), or None."""
    found = source_path(session, job_id)
    if found is None:
        return None
    kind, path = found
    return _source(kind, str(path), path.stat().st_mtime)
