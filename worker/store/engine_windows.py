"""Each GPU worker's in-flight window on its inference engine, as it last said.

The window (``models.engine_window``) lives in the worker's memory; the dashboard, the
API and the Prometheus endpoint are other processes.  The worker's engine feeder
(``worker.pipeline.inflight``) writes its figures here every few seconds, and readers
take the rows of live workers only (a dead worker's last figure is no one's now).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Float, Integer, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from worker.store.db import Base, WorkerProcess, now


class EngineWindow(Base):
    """One row per GPU worker that has fed an engine (migration 0014)."""

    __tablename__ = "engine_windows"

    worker: Mapped[str] = mapped_column(String(128), primary_key=True)
    window: Mapped[int] = mapped_column(Integer)  # studies it may keep in flight now
    in_flight: Mapped[int] = mapped_column(Integer)  # studies in flight now
    peak: Mapped[int] = mapped_column(Integer)  # the most in flight since it started
    ceiling: Mapped[int] = mapped_column(Integer)  # CXR_OPENAI_MAX_IN_FLIGHT
    steered_by: Mapped[str] = mapped_column(String(32))  # "engine metrics" or "latency"
    updated_at: Mapped[float] = mapped_column(Float)


@dataclass(frozen=True)
class Figures:
    window: int
    in_flight: int
    peak: int
    ceiling: int
    steered_by: str


def record(session: Session, worker: str, figures: Figures) -> None:
    """This worker's figures now (one row per worker, replaced)."""
    row = session.get(EngineWindow, worker)
    if row is None:
        row = EngineWindow(worker=worker)
        session.add(row)
    row.window, row.in_flight, row.peak = figures.window, figures.in_flight, figures.peak
    row.ceiling, row.steered_by, row.updated_at = figures.ceiling, figures.steered_by, now()
    session.commit()


def live(session: Session, timeout: float) -> dict[str, Figures]:
    """The figures of workers whose heartbeat is fresh, by worker name."""
    rows = session.execute(select(EngineWindow).join(
        WorkerProcess, WorkerProcess.name == EngineWindow.worker).where(
        WorkerProcess.stopped_at.is_(None),
        WorkerProcess.last_beat >= now() - timeout)).scalars().all()
    return {r.worker: Figures(r.window, r.in_flight, r.peak, r.ceiling, r.steered_by)
            for r in rows}
