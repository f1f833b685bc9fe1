"""Reader studies (the paper's section 4.1) as records: the study, its cases, every read the
schedule holds, and each questionnaire answer.  The design (conditions, statements, the
schedule rule) is ``reader_design``'s; this module keeps what happened.

A read is one row per (reader, position) made when the study is created, so the schedule
is recorded before anyone reads and a reader resumes wherever they stopped: their current
read is the first one not done.  It fills in as the reader goes: ``shown_at`` when the
case is first shown, ``reported_at`` when the report comes in (the server's clock, both),
``done_at`` when the questionnaire is complete (at once for no AI, which asks none).

Blinding is decided here, from those rows alone, so every route asks the same question:
until a reader's labels-only read of a case is done, that reader may not see the model's
full output on it; until the no-AI read is done, not even its labels (``visible``).
Retention never deletes any of these rows (``retention`` purges only skipped instances'
spool files).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Boolean,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
    insert,
    select,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from worker.store import reader_design as design
from worker.store.db import UID, Base, now

NOTHING, LABELS_ONLY, EVERYTHING = 0, 1, 2  # what a reader may see of a case's output
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MAX_REPORT = 20_000  # characters of one report
MAX_COMMENT = 4_000


class ReaderStudy(Base):
    """One study (migration 0015)."""

    __tablename__ = "reader_studies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[float] = mapped_column(Float)
    created_by: Mapped[str] = mapped_column(String(64), default="")
    seed: Mapped[int] = mapped_column(Integer)
    readers: Mapped[str] = mapped_column(Text)  # comma-separated, in the order given
    template: Mapped[str] = mapped_column(Text)  # the report headings, one per line
    source: Mapped[str] = mapped_column(Text, default="")  # how the cases were chosen
    mock: Mapped[bool] = mapped_column(Boolean, default=False)  # over mock results


class ReaderCase(Base):
    """A case: one processed job; ``reference`` normal | abnormal | "" (unknown)."""

    __tablename__ = "reader_cases"
    __table_args__ = (UniqueConstraint("study_id", "number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("reader_studies.id"), index=True)
    number: Mapped[int] = mapped_column(Integer)  # 1..n, the order given
    job_id: Mapped[int] = mapped_column(Integer)
    study_instance_uid: Mapped[str] = mapped_column(UID)
    reference: Mapped[str] = mapped_column(String(16), default="")
    reference_source: Mapped[str] = mapped_column(Text, default="")


class ReaderRead(Base):
    """One scheduled read, kept whole once done: the report verbatim and its times."""

    __tablename__ = "reader_reads"
    __table_args__ = (UniqueConstraint("study_id", "reader", "position"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("reader_studies.id"), index=True)
    reader: Mapped[str] = mapped_column(String(64), index=True)
    position: Mapped[int] = mapped_column(Integer)  # 1..3n in the reader's schedule
    case_id: Mapped[int] = mapped_column(ForeignKey("reader_cases.id"))
    job_id: Mapped[int] = mapped_column(Integer, index=True)
    condition: Mapped[str] = mapped_column(String(16))
    shown_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    reported_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    done_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    report: Mapped[str] = mapped_column(Text, default="")
    active_seconds: Mapped[float] = mapped_column(Float, default=0.0)  # page visible
    active_at: Mapped[float] = mapped_column(Float, default=0.0)  # last active time added
    comment: Mapped[str] = mapped_column(Text, default="")


class ReaderAnswer(Base):
    """One statement's answer (1..5) after one read."""

    __tablename__ = "reader_answers"
    __table_args__ = (UniqueConstraint("read_id", "item"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    read_id: Mapped[int] = mapped_column(ForeignKey("reader_reads.id"), index=True)
    item: Mapped[str] = mapped_column(String(8))
    value: Mapped[int] = mapped_column(Integer)


class StudyError(ValueError):
    """A study that cannot be made or a read that cannot be taken as sent; says why."""


@dataclass(frozen=True)
class CaseIn:
    """A case as the study is made with it."""

    job_id: int
    study_instance_uid: str
    reference: str = ""
    reference_source: str = ""


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise StudyError(f"{name!r} is not a study or reader name: 1-64 letters, digits, "
                         "'.', '_' or '-', starting with a letter or digit")
    return name


def create(session: Session, name: str, cases: Sequence[CaseIn], readers: Sequence[str],
           seed: int, template: Sequence[str], *, mock: bool = False, source: str = "",
           created_by: str = "") -> ReaderStudy:
    """The study, its cases and every reader's schedule (committed)."""
    check_name(name)
    for reader in readers:
        check_name(reader)
    if session.scalar(select(ReaderStudy.id).where(ReaderStudy.name == name)) is not None:
        raise StudyError(f"a reader study named {name!r} exists; choose another name")
    try:
        plan = design.schedule(len(cases), list(readers), seed)
    except design.DesignError as exc:
        raise StudyError(str(exc)) from None
    study = ReaderStudy(name=name, created_at=now(), created_by=created_by, seed=seed,
                        readers=",".join(readers), template="\n".join(template),
                        source=source, mock=mock)
    session.add(study)
    session.flush()
    session.execute(insert(ReaderCase), [
        {"study_id": study.id, "number": i, "job_id": c.job_id,
         "study_instance_uid": c.study_instance_uid, "reference": c.reference,
         "reference_source": c.reference_source} for i, c in enumerate(cases, 1)])
    ids = {number: case_id for number, case_id in session.execute(select(
        ReaderCase.number, ReaderCase.id).where(ReaderCase.study_id == study.id))}
    session.execute(insert(ReaderRead), [
        {"study_id": study.id, "reader": reader, "position": position,
         "case_id": ids[number], "job_id": cases[number - 1].job_id, "condition": condition}
        for reader, slots in plan.items()
        for position, (number, condition) in enumerate(slots, 1)])
    session.commit()
    return study


def named(session: Session, name: str) -> ReaderStudy | None:
    found: ReaderStudy | None = session.scalar(select(ReaderStudy).where(
        ReaderStudy.name == name))
    return found


def readers_of(study: ReaderStudy) -> list[str]:
    return [r for r in study.readers.split(",") if r]


def all_studies(session: Session) -> list[ReaderStudy]:
    return list(session.scalars(select(ReaderStudy).order_by(ReaderStudy.id)).all())


def current(session: Session, study_id: int, reader: str) -> ReaderRead | None:
    """The reader's first read not done (None: they have finished)."""
    found: ReaderRead | None = session.scalar(select(ReaderRead).where(
        ReaderRead.study_id == study_id, ReaderRead.reader == reader,
        ReaderRead.done_at.is_(None)).order_by(ReaderRead.position).limit(1))
    return found


def read_at(session: Session, study_id: int, reader: str, position: int) -> ReaderRead | None:
    found: ReaderRead | None = session.scalar(select(ReaderRead).where(
        ReaderRead.study_id == study_id, ReaderRead.reader == reader,
        ReaderRead.position == position))
    return found


def earlier_report(session: Session, read: ReaderRead, condition: str) -> str:
    """The reader's report on the same case under an earlier ``condition`` ("" if none)."""
    text = session.scalar(select(ReaderRead.report).where(
        ReaderRead.study_id == read.study_id, ReaderRead.reader == read.reader,
        ReaderRead.case_id == read.case_id, ReaderRead.condition == condition))
    return text or ""


def show(session: Session, read: ReaderRead) -> None:
    """The case is on the reader's screen: its clock starts now, once (a reader who comes
    back to it later keeps the first time)."""
    if read.shown_at is None:
        read.shown_at = read.active_at = now()
        session.commit()


def add_active(session: Session, read: ReaderRead, seconds: float) -> None:
    """Seconds the page was visible, as the page counts them; never more than the time
    that passed since the last count (a page cannot claim time it did not have)."""
    if read.reported_at is not None or read.shown_at is None:
        return
    t = now()
    allowed = max(0.0, t - max(read.shown_at, read.active_at)) + 1.0
    read.active_seconds += max(0.0, min(float(seconds), allowed))
    read.active_at = t
    session.commit()


def submit_report(session: Session, read: ReaderRead, report: str, active: float) -> None:
    """The report, verbatim; a read under no AI is done with it (no questionnaire)."""
    if read.shown_at is None:
        raise StudyError("this case has not been shown yet")
    if read.reported_at is not None:
        raise StudyError(f"the report for position {read.position} is in already")
    if len(report) > MAX_REPORT:
        raise StudyError(f"a report is at most {MAX_REPORT} characters")
    if not report.strip():
        raise StudyError("the report is empty")
    add_active(session, read, active)
    read.report = report
    read.reported_at = now()
    if not design.items_for(read.condition):
        read.done_at = read.reported_at
    session.commit()


def submit_answers(session: Session, read: ReaderRead, answers: dict[str, int],
                   comment: str) -> None:
    """The questionnaire, complete (``reader_design.check_answers``); the read is done."""
    if read.reported_at is None:
        raise StudyError("the report comes first, then the questionnaire")
    if read.done_at is not None:
        raise StudyError(f"position {read.position} is done already")
    if len(comment) > MAX_COMMENT:
        raise StudyError(f"a comment is at most {MAX_COMMENT} characters")
    try:
        checked = design.check_answers(read.condition, answers)
    except design.DesignError as exc:
        raise StudyError(str(exc)) from None
    session.add_all(ReaderAnswer(read_id=read.id, item=k, value=v) for k, v in checked.items())
    read.comment = comment
    read.done_at = now()
    session.commit()


def visible(session: Session, reader: str, job_id: int) -> int:
    """How much of job ``job_id``'s output ``reader`` may see now: NOTHING before their
    no-AI read of it is done, LABELS_ONLY before the labels-only read is done, else
    EVERYTHING (also for a job in no study of theirs).  Over several studies, the least."""
    rows = session.execute(select(ReaderRead.study_id, ReaderRead.condition,
                                  ReaderRead.done_at).where(
        ReaderRead.reader == reader, ReaderRead.job_id == job_id,
        ReaderRead.condition != design.FULL)).all()
    level = EVERYTHING
    for study_id in {r.study_id for r in rows}:
        done = {r.condition for r in rows if r.study_id == study_id and r.done_at is not None}
        level = min(level, EVERYTHING if design.LABELS in done else
                    LABELS_ONLY if design.NO_AI in done else NOTHING)
    return level


def blinded_studies(session: Session, reader: str) -> list[str]:
    """The studies in which ``reader`` still has a case whose output they may not see."""
    return list(session.scalars(select(ReaderStudy.name).join(
        ReaderRead, ReaderRead.study_id == ReaderStudy.id).where(
        ReaderRead.reader == reader, ReaderRead.condition == design.LABELS,
        ReaderRead.done_at.is_(None)).distinct()).all())


def progress(session: Session, study: ReaderStudy) -> list[dict[str, Any]]:
    """Per reader: reads done of all, where they are, when they last finished one."""
    rows = session.execute(select(
        ReaderRead.reader, func.count(), func.count(ReaderRead.done_at),
        func.max(ReaderRead.done_at)).where(ReaderRead.study_id == study.id).group_by(
        ReaderRead.reader)).all()
    by_reader = {r[0]: r for r in rows}
    out = []
    for reader in readers_of(study):
        _, total, done, last = by_reader.get(reader, (reader, 0, 0, None))
        out.append({"reader": reader, "done": int(done), "total": int(total),
                    "next_position": int(done) + 1 if done < total else None,
                    "last_done_at": last})
    return out
