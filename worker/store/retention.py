"""Retention: instances admission did not use are kept a while (for audit and for late
re-admission), then their spool files are deleted; the database row and reason stay.

Nothing else is purged: a job row keeps its model input (the PNG the model read), its
result, its conversation (``conversation_turns``) and its questions for as long as the
job is kept, so a follow-up question can be asked about any kept job without its source
image (``worker.store.conversations``).  Reader studies' reads and answers
(``worker.store.reader_studies``) are never purged either, nor the admitted instances
their reading page shows."""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy import select

from worker.store.db import Database, Instance, now

log = logging.getLogger(__name__)


def purge_skipped(db: Database, retention_seconds: float, limit: int = 500) -> int:
    """Delete spool files of instances skipped longer than ``retention_seconds`` ago."""
    cutoff = now() - retention_seconds
    with db.session() as s:
        rows = s.scalars(select(Instance).where(
            Instance.admission == "skipped", Instance.purged_at.is_(None),
            Instance.received_at < cutoff).limit(limit)).all()
        for inst in rows:
            Path(inst.path).unlink(missing_ok=True)
            inst.purged_at = now()
        s.commit()
    if rows:
        log.info("purged %d skipped instance file(s) past retention", len(rows))
    return len(rows)
