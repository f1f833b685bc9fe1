"""The database: the source of truth for what was received and where each job stands.

Timestamps are epoch seconds (float) so that stage timings are exact and identical
on SQLite and PostgreSQL.  The schema is created by Alembic migrations
(``worker/store/migrations``), applied on every start.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import time
from collections.abc import Iterator

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

# re-exported: opening and migrating are worker.store.schema's
from worker.store.schema import make_engine as make_engine
from worker.store.schema import migrate as migrate
from worker.store.schema import schema_revisions as schema_revisions

UID = String(64)
ONE_ANSWERING = text("state = 'answering'")  # one such question per job (migration 0012)


def now() -> float:
    return time.time()


class Base(DeclarativeBase):
    pass


class Study(Base):
    __tablename__ = "studies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_instance_uid: Mapped[str] = mapped_column(UID, unique=True)
    outcome: Mapped[str] = mapped_column(String(255), default="")
    # the routing rule that decided it ("default" = the built-in admission; "" = not yet)
    rule: Mapped[str] = mapped_column(String(255), default="")
    first_received_at: Mapped[float] = mapped_column(Float)
    last_received_at: Mapped[float] = mapped_column(Float, index=True)
    assembled_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class Instance(Base):
    __tablename__ = "instances"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sop_instance_uid: Mapped[str] = mapped_column(UID, unique=True)
    sop_class_uid: Mapped[str] = mapped_column(UID)
    study_instance_uid: Mapped[str] = mapped_column(UID, index=True)
    series_instance_uid: Mapped[str] = mapped_column(String(64), default="")
    modality: Mapped[str] = mapped_column(String(16), default="")
    transfer_syntax_uid: Mapped[str] = mapped_column(String(64), default="")
    path: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    calling_ae: Mapped[str] = mapped_column(String(16), default="")
    peer: Mapped[str] = mapped_column(String(64), default="")
    received_at: Mapped[float] = mapped_column(Float)
    admission: Mapped[str] = mapped_column(String(16), default="pending")
    skip_reason: Mapped[str] = mapped_column(Text, default="")
    purged_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (UniqueConstraint("study_instance_uid", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_instance_uid: Mapped[str] = mapped_column(UID, index=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    sop_instance_uid: Mapped[str] = mapped_column(UID)
    state: Mapped[str] = mapped_column(String(16), index=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    source_header: Mapped[str] = mapped_column(Text)
    conversion: Mapped[str] = mapped_column(Text, default="")
    result: Mapped[str | None] = mapped_column(Text, nullable=True)
    sr_sop_instance_uid: Mapped[str] = mapped_column(String(64), default="")
    sr_path: Mapped[str] = mapped_column(Text, default="")
    # the rendered report pages (issue 24; Secondary Capture files in the outbox, one path
    # a line; "" = none, because no destination asked for them)
    page_paths: Mapped[str] = mapped_column(Text, default="")
    # 0 = live PACS traffic, 9 = retrospective batch (Celery/Redis order: lower first)
    priority: Mapped[int] = mapped_column(Integer, default=0, index=True)
    # the model-ready PNG: small, and what lets any GPU node run the job (no shared disk)
    model_input: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    worker: Mapped[str] = mapped_column(String(128), default="")  # who ran the inference
    # Liveness: the process working on the job now ("" while it waits in a queue or for a
    # retry); a holder whose heartbeat stops loses the job to the reconciler.
    holder: Mapped[str] = mapped_column(String(128), default="", index=True)
    held_since: Mapped[float] = mapped_column(Float, default=0.0)
    enqueued_at: Mapped[float] = mapped_column(Float, default=0.0)  # last message published
    next_attempt_at: Mapped[float] = mapped_column(Float, default=0.0)  # 0: none scheduled
    retries: Mapped[int] = mapped_column(Integer, default=0)  # transient inference failures
    last_error: Mapped[str] = mapped_column(Text, default="")
    batch_run_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    origin: Mapped[str] = mapped_column(String(16), default="dicom")  # dicom | image
    # routing (issue 23): the rule that admitted the instance, its destination set
    # ("" = the default destinations) and that set's comma list when the job was routed
    rule: Mapped[str] = mapped_column(String(64), default="")
    destination_set: Mapped[str] = mapped_column(String(64), default="")
    destinations: Mapped[str] = mapped_column(Text, default="")


class JobEvent(Base):
    __tablename__ = "job_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    state: Mapped[str] = mapped_column(String(16))
    at: Mapped[float] = mapped_column(Float)
    detail: Mapped[str] = mapped_column(Text, default="")


class Delivery(Base):
    """One document of a job (``worker.store.deliveries``) to one destination."""

    __tablename__ = "deliveries"
    __table_args__ = (UniqueConstraint("job_id", "document", "destination",
                                       name="uq_deliveries_job_document_destination"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    document: Mapped[str] = mapped_column(String(80), default="", index=True)
    destination: Mapped[str] = mapped_column(String(128))
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    detail: Mapped[str] = mapped_column(Text, default="")
    updated_at: Mapped[float] = mapped_column(Float)
    next_attempt_at: Mapped[float] = mapped_column(Float, default=0.0)
    holder: Mapped[str] = mapped_column(String(128), default="")
    held_since: Mapped[float] = mapped_column(Float, default=0.0)


class BatchRun(Base):
    """A named retrospective run: its source, and the model settings its results are for."""

    __tablename__ = "batch_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    source: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(16))  # folder | images | pacs | dicomweb
    options: Mapped[str] = mapped_column(Text, default="{}")
    model_key: Mapped[str] = mapped_column(String(255))
    prompt: Mapped[str] = mapped_column(Text)
    conversion: Mapped[str] = mapped_column(String(32))
    send_srs: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[float] = mapped_column(Float)
    scanned_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class BatchItem(Base):
    """One study of a run: pending -> fetched -> done | skipped | failed."""

    __tablename__ = "batch_items"
    __table_args__ = (UniqueConstraint("run_id", "study_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("batch_runs.id"))
    study_key: Mapped[str] = mapped_column(String(255))  # the source's id for the study
    study_instance_uid: Mapped[str] = mapped_column(String(64), default="")
    source_ref: Mapped[str] = mapped_column(Text, default="")
    state: Mapped[str] = mapped_column(String(16), default="pending")
    reason: Mapped[str] = mapped_column(Text, default="")
    job_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    fetched_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class BatchFile(Base):
    """A file of a folder source, found at scan time (so a rerun need not walk again)."""

    __tablename__ = "batch_files"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("batch_items.id"), index=True)
    path: Mapped[str] = mapped_column(Text)


class WorkerProcess(Base):
    """One row per gateway or worker process: its heartbeat is its claim on its jobs."""

    __tablename__ = "workers"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # serve | worker
    host: Mapped[str] = mapped_column(String(128))
    pid: Mapped[int] = mapped_column(Integer)
    queues: Mapped[str] = mapped_column(String(64), default="")
    started_at: Mapped[float] = mapped_column(Float)
    last_beat: Mapped[float] = mapped_column(Float)
    stopped_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class AssociationLog(Base):
    """One row per DICOM association: who, from where, when, what was stored, how it ended."""

    __tablename__ = "associations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    calling_ae: Mapped[str] = mapped_column(String(16), default="")
    called_ae: Mapped[str] = mapped_column(String(16), default="")
    peer: Mapped[str] = mapped_column(String(64), default="")
    started_at: Mapped[float] = mapped_column(Float, index=True)
    ended_at: Mapped[float] = mapped_column(Float)
    stored: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    outcome: Mapped[str] = mapped_column(String(16))
    statuses: Mapped[str] = mapped_column(Text, default="")


class Installation(Base):
    """This database's identity: one row, created once, never changed.  Every UID the
    gateway creates derives from ``uid_seed``, so two installations, or one database
    reset, never give one UID to different content."""

    __tablename__ = "installation"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uid_seed: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[float] = mapped_column(Float)


class ConversationTurn(Base):
    """One turn of a study's chat with the model, verbatim (issue 25): prompts with the
    image reference, replies with their reasoning, the report turn, every follow-up."""

    __tablename__ = "conversation_turns"
    __table_args__ = (UniqueConstraint("job_id", "job_version", "seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    job_version: Mapped[int] = mapped_column(Integer)
    seq: Mapped[int] = mapped_column(Integer)  # 0 = the first user turn
    role: Mapped[str] = mapped_column(String(16))  # user | assistant
    kind: Mapped[str] = mapped_column(String(16))  # findings | report | followup
    text: Mapped[str] = mapped_column(Text)
    # the first user turn: which image went with it ("model_input sha256:<hex>", the job's
    # own model input); "" for every other turn (the image is sent once)
    image_ref: Mapped[str] = mapped_column(String(128), default="")
    question_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    generated_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[float] = mapped_column(Float)


class Question(Base):
    """A reviewer's follow-up question on a job and, once there, the model's answer:
    who asked (a name or token identity, never patient data) and when."""

    __tablename__ = "questions"
    __table_args__ = (Index("uq_questions_one_answering_per_job", "job_id", unique=True,
                            sqlite_where=ONE_ANSWERING, postgresql_where=ONE_ANSWERING),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    text: Mapped[str] = mapped_column(Text)
    asked_by: Mapped[str] = mapped_column(String(128), default="")
    asked_at: Mapped[float] = mapped_column(Float)
    # waiting (for a GPU worker, or for the job's first turns) | answering | answered | failed
    state: Mapped[str] = mapped_column(String(16), index=True, default="waiting")
    route: Mapped[str] = mapped_column(String(16), default="")
    holder: Mapped[str] = mapped_column(String(128), default="")
    held_since: Mapped[float] = mapped_column(Float, default=0.0)
    answered_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    job_version: Mapped[int | None] = mapped_column(Integer, nullable=True)  # answered on
    reply_text: Mapped[str] = mapped_column(Text, default="")  # verbatim
    reasoning: Mapped[str] = mapped_column(Text, default="")
    answer: Mapped[str] = mapped_column(Text, default="")  # as shown ("Answer: ...")
    status: Mapped[str] = mapped_column(String(16), default="")  # answered|refused|...
    generated_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    reused_turn: Mapped[int | None] = mapped_column(Integer, nullable=True)  # turn seq
    worker: Mapped[str] = mapped_column(String(128), default="")
    error: Mapped[str] = mapped_column(Text, default="")
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # failed tries to answer
    # the addendum SR, when asked for (--to-pacs): "" | wanted | sending | written | failed
    # (its deliveries are rows of ``deliveries``, document ``addendum:<id>``)
    addendum: Mapped[str] = mapped_column(String(16), default="")
    addendum_sop_instance_uid: Mapped[str] = mapped_column(String(64), default="")
    addendum_path: Mapped[str] = mapped_column(Text, default="")
    addendum_detail: Mapped[str] = mapped_column(Text, default="")


class ApiToken(Base):
    """A named token (issue 25), hashed; with its role (``roles``); revoked ones stay."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), index=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[float] = mapped_column(Float)
    revoked_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    last_used_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    role: Mapped[str] = mapped_column(String(16), default="reviewer", server_default="reviewer")


class Review(Base):
    """A reviewer's verdict on one job: who, when, a note; ``current`` is False once the
    same reviewer records a newer verdict on the same job (the history is kept)."""

    __tablename__ = "reviews"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    study_instance_uid: Mapped[str] = mapped_column(UID, index=True)
    reviewer: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[float] = mapped_column(Float)
    note: Mapped[str] = mapped_column(Text, default="")
    current: Mapped[bool] = mapped_column(Boolean, default=True, index=True)


class ReviewLabel(Base):
    """One of a review's 14 label verdicts: agree | disagree | not_assessable, what the
    model said (0/1) and what the reviewer says (1, 0, or None: not assessable)."""

    __tablename__ = "review_labels"
    __table_args__ = (UniqueConstraint("review_id", "label"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    review_id: Mapped[int] = mapped_column(ForeignKey("reviews.id"), index=True)
    label: Mapped[str] = mapped_column(String(64))
    verdict: Mapped[str] = mapped_column(String(16))
    model_present: Mapped[int] = mapped_column(Integer)
    reviewer_present: Mapped[int | None] = mapped_column(Integer, nullable=True)


class Database:
    """An engine plus a session factory; one per process."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.session: sessionmaker[Session] = sessionmaker(self.engine, expire_on_commit=False)
        path = self.engine.url.database if url.startswith("sqlite") else None
        self._turn_file = f"{path}.writers" if path and path != ":memory:" else None
        self._turn_fd: int | None = None  # opened on first use

    def migrate(self) -> None:
        migrate(self.url)

    @contextlib.contextmanager
    def writers_turn(self) -> Iterator[None]:
        """Wait for this process's turn to write, when several processes write at once.

        SQLite admits one writer at a time and makes the others poll with growing sleeps
        (1, 2, 5, 10 ms ...), a long wait for a 0.5 ms commit.  Listener processes that
        queue on an exclusive ``flock`` instead wake the moment the commit before theirs
        ends.  PostgreSQL queues writers itself: no lock there.  Callers serialise their
        own threads (a flock does not exclude threads sharing one descriptor).
        """
        if self._turn_file is None:
            yield
            return
        if self._turn_fd is None:
            self._turn_fd = os.open(self._turn_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                                    0o600)
        fcntl.flock(self._turn_fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._turn_fd, fcntl.LOCK_UN)

    def installation_seed(self) -> str:
        """The installation's UID seed, created on first call (race-safe: one row, id 1)."""
        with self.session() as s:
            row = s.get(Installation, 1)
            if row is not None:
                return row.uid_seed
            s.add(Installation(id=1, uid_seed=secrets.token_hex(16), created_at=now()))
            try:
                s.commit()
            except IntegrityError:  # another process created it first: use theirs
                s.rollback()
            row = s.get(Installation, 1)
            assert row is not None
            return row.uid_seed
