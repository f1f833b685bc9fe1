"""A reader study's record as tidy tables: one row per read, one row per answer.

``reads.csv``: each scheduled read (reader, position in their schedule, case, the study's
UID, condition, the case's reference), its server times (shown, reported, done, and the
seconds from shown to reported), the page's active seconds, the report verbatim and the
comment; reads not yet done are listed with empty times, so the file is also the
schedule.  ``answers.csv``: each answer, keyed by reader and position like the read it
follows.  No patient data: UIDs, names of readers, and what they wrote.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from worker.store import reader_design as design
from worker.store.jobs import iso
from worker.store.reader_studies import ReaderAnswer, ReaderCase, ReaderRead, ReaderStudy

READ_COLUMNS = ("study", "reader", "position", "case", "study_instance_uid", "job_id",
                "condition", "reference", "shown_at", "reported_at", "done_at",
                "report_seconds", "active_seconds", "mock", "report", "comment")
ANSWER_COLUMNS = ("study", "reader", "position", "case", "condition", "reference", "item",
                  "statement", "value", "mock")


def read_rows(session: Session, study: ReaderStudy) -> list[dict[str, Any]]:
    """Every read of the study in reader and schedule order (columns, not objects: a study
    of 500 cases and 5 readers is 7,500 reads)."""
    rows = session.execute(select(
        ReaderRead.reader, ReaderRead.position, ReaderCase.number,
        ReaderCase.study_instance_uid, ReaderCase.job_id, ReaderRead.condition,
        ReaderCase.reference, ReaderRead.shown_at, ReaderRead.reported_at, ReaderRead.done_at,
        ReaderRead.active_seconds, ReaderRead.report, ReaderRead.comment).join(
        ReaderCase, ReaderCase.id == ReaderRead.case_id).where(
        ReaderRead.study_id == study.id).order_by(ReaderRead.reader,
                                                  ReaderRead.position)).all()
    out = []
    for r in rows:
        reported = r.reported_at is not None and r.shown_at is not None
        out.append({
            "study": study.name, "reader": r.reader, "position": r.position,
            "case": r.number, "study_instance_uid": r.study_instance_uid, "job_id": r.job_id,
            "condition": r.condition, "reference": r.reference,
            "shown_at": iso(r.shown_at) or "", "reported_at": iso(r.reported_at) or "",
            "done_at": iso(r.done_at) or "",
            "report_seconds": round(r.reported_at - r.shown_at, 3) if reported else None,
            "active_seconds": round(r.active_seconds, 3) if reported else None,
            "mock": int(study.mock), "report": r.report, "comment": r.comment,
            "done": r.done_at is not None})
    return out


def answer_rows(session: Session, study: ReaderStudy) -> list[dict[str, Any]]:
    """Every answer, in reader, schedule and statement order."""
    rows = session.execute(select(
        ReaderRead.reader, ReaderRead.position, ReaderCase.number, ReaderRead.condition,
        ReaderCase.reference, ReaderAnswer.item, ReaderAnswer.value).select_from(
        ReaderAnswer).join(ReaderRead, ReaderRead.id == ReaderAnswer.read_id).join(
        ReaderCase, ReaderCase.id == ReaderRead.case_id).where(
        ReaderRead.study_id == study.id).order_by(
        ReaderRead.reader, ReaderRead.position, ReaderAnswer.item)).all()
    return [{"study": study.name, "reader": r.reader, "position": r.position,
             "case": r.number, "condition": r.condition, "reference": r.reference,
             "item": r.item, "statement": design.ITEM_BY_CODE[r.item].text,
             "value": r.value, "mock": int(study.mock)} for r in rows]


def write_csvs(session: Session, study: ReaderStudy, out_dir: Path) -> list[Path]:
    """reads.csv and answers.csv in ``out_dir`` (made if missing)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, columns, rows in (("reads.csv", READ_COLUMNS, read_rows(session, study)),
                                ("answers.csv", ANSWER_COLUMNS, answer_rows(session, study))):
        path = out_dir / name
        with path.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
        written.append(path)
    return written
