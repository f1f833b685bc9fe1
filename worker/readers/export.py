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
    """Every read of the study in reader and schedule order."""
    rows = session.execute(select(ReaderRead, ReaderCase).join(
        ReaderCase, ReaderCase.id == ReaderRead.case_id).where(
        ReaderRead.study_id == study.id).order_by(ReaderRead.reader,
                                                  ReaderRead.position)).all()
    out = []
    for read, case in rows:
        seconds = (read.reported_at - read.shown_at
                   if read.reported_at is not None and read.shown_at is not None else None)
        out.append({
            "study": study.name, "reader": read.reader, "position": read.position,
            "case": case.number, "study_instance_uid": case.study_instance_uid,
            "job_id": case.job_id, "condition": read.condition, "reference": case.reference,
            "shown_at": iso(read.shown_at) if read.shown_at else "",
            "reported_at": iso(read.reported_at) if read.reported_at else "",
            "done_at": iso(read.done_at) if read.done_at else "",
            "report_seconds": None if seconds is None else round(seconds, 3),
            "active_seconds": round(read.active_seconds, 3) if read.reported_at else None,
            "mock": int(study.mock), "report": read.report, "comment": read.comment,
            "done": read.done_at is not None})
    return out


def answer_rows(session: Session, study: ReaderStudy) -> list[dict[str, Any]]:
    """Every answer, in reader, schedule and statement order."""
    rows = session.execute(select(ReaderAnswer, ReaderRead, ReaderCase).join(
        ReaderRead, ReaderRead.id == ReaderAnswer.read_id).join(
        ReaderCase, ReaderCase.id == ReaderRead.case_id).where(
        ReaderRead.study_id == study.id).order_by(
        ReaderRead.reader, ReaderRead.position, ReaderAnswer.item)).all()
    return [{"study": study.name, "reader": read.reader, "position": read.position,
             "case": case.number, "condition": read.condition, "reference": case.reference,
             "item": answer.item, "statement": design.ITEM_BY_CODE[answer.item].text,
             "value": answer.value, "mock": int(study.mock)}
            for answer, read, case in rows]


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
