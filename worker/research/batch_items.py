"""A batch run's own rows: the states of its items, the listing, and the queries on them.

Every part of a batch (the sources that list and fetch, the run loop, the outputs) reads
and writes ``batch_items`` and ``batch_files`` through these few functions, so the states
and what they mean are spelled in one place.  An item goes pending -> fetched -> done,
skipped or failed; a rerun of the same name picks up where the rows say it stopped.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

from sqlalchemy import delete, func, select, update

from worker.store.db import BatchFile, BatchItem, Database

PENDING, FETCHED, DONE, SKIPPED, FAILED = "pending", "fetched", "done", "skipped", "failed"
FINISHED = (DONE, SKIPPED, FAILED)
SKIP = "skip:"  # a fetch reason with this prefix marks the study skipped, not failed


class BatchError(RuntimeError):
    """A batch cannot start or go on; the message says what to change."""


class ListedStudy(NamedTuple):
    """One study as a source lists it, before anything is fetched."""

    key: str  # the source's own id for the study (batch_items.study_key)
    uid: str  # its StudyInstanceUID (derived for a PNG/JPEG study)
    ref: str  # what the source remembers about it (e.g. a lateral-only row)
    files: list[str]  # the files to fetch it from, where the source has files


def clear_listing(db: Database, run_id: int) -> None:
    """Forget a listing that was cut short (no study of it was fetched yet)."""
    with db.session() as s:
        ids = select(BatchItem.id).where(BatchItem.run_id == run_id)
        s.execute(delete(BatchFile).where(BatchFile.item_id.in_(ids)))
        s.execute(delete(BatchItem).where(BatchItem.run_id == run_id))
        s.commit()


def insert_listing(db: Database, run_id: int, studies: Iterable[ListedStudy],
                   every: int = 500) -> None:
    """Write listed studies as pending items, committed ``every`` at a time (a listing of
    any size is never held whole; a study listed twice gains the second one's files)."""
    pending: list[ListedStudy] = []

    def flush() -> None:
        with db.session() as s:
            for study in pending:
                item = s.scalar(select(BatchItem).where(
                    BatchItem.run_id == run_id, BatchItem.study_key == study.key))
                if item is None:
                    item = BatchItem(run_id=run_id, study_key=study.key,
                                     study_instance_uid=study.uid, source_ref=study.ref,
                                     state=PENDING, reason="")
                    s.add(item)
                    s.flush()
                s.add_all(BatchFile(item_id=item.id, path=f) for f in study.files)
            s.commit()
        pending.clear()

    for study in studies:
        pending.append(study)
        if len(pending) >= every:
            flush()
    flush()


def item_files(db: Database, item_id: int) -> list[str]:
    """The file paths listed for one study, in listing order."""
    with db.session() as s:
        return list(s.scalars(select(BatchFile.path).where(BatchFile.item_id == item_id)))


def mark(db: Database, item_id: int, **values: Any) -> None:
    """Set columns of one item (its state, reason, job, times)."""
    with db.session() as s:
        s.execute(update(BatchItem).where(BatchItem.id == item_id).values(**values))
        s.commit()


def count_items(db: Database, run_id: int, state: str | None = None) -> int:
    """How many items the run has (in ``state``, if given)."""
    with db.session() as s:
        query = select(func.count()).select_from(BatchItem).where(BatchItem.run_id == run_id)
        if state:
            query = query.where(BatchItem.state == state)
        return int(s.scalar(query) or 0)


def counts_by_state(db: Database, run_id: int) -> dict[str, int]:
    """The run's items counted per state (states with none are absent)."""
    with db.session() as s:
        rows = s.execute(select(BatchItem.state, func.count()).where(
            BatchItem.run_id == run_id).group_by(BatchItem.state)).all()
    return {str(state): int(n) for state, n in rows}
