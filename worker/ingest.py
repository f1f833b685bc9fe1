"""Recording received instances: the listener's sink.

Runs inside the C-STORE handler, before the acknowledgement, so it does only what
the promise needs: one committed row per instance and the study's arrival times.
A duplicate SOP Instance UID is success and creates no new work.
"""

from __future__ import annotations

import json

from sqlalchemy import insert, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError

from dicom_gateway.listener import AssociationRecord, ReceivedInstance, StorageUnavailable
from worker.db import AssociationLog, Database, Instance, Study, now


class InstanceRecorder:
    """The ``Sink`` the listener calls; raises StorageUnavailable if nothing was recorded."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def __call__(self, received: ReceivedInstance) -> None:
        for attempt in range(2):
            try:
                self._record(received)
                return
            except IntegrityError:
                if attempt:  # a concurrent writer won twice: give up loudly
                    raise
            except Exception as exc:
                raise StorageUnavailable(f"database unavailable: {exc}") from exc

    def _record(self, r: ReceivedInstance) -> None:
        """Two statements and one commit: this runs before every acknowledgement."""
        t = now()
        values = {
            "sop_instance_uid": r.sop_instance_uid, "sop_class_uid": r.sop_class_uid,
            "study_instance_uid": r.study_instance_uid,
            "series_instance_uid": r.series_instance_uid, "modality": r.modality,
            "transfer_syntax_uid": r.transfer_syntax_uid, "path": str(r.path), "size": r.size,
            "sha256": r.sha256, "calling_ae": r.calling_ae, "peer": r.peer, "received_at": t,
            "admission": "pending", "skip_reason": "",
        }
        dialect_insert = pg_insert if self.db.engine.dialect.name == "postgresql" \
            else sqlite_insert
        with self.db.engine.begin() as conn:
            inserted = conn.execute(dialect_insert(Instance).values(**values)
                                    .on_conflict_do_nothing(index_elements=["sop_instance_uid"]))
            if inserted.rowcount == 0:
                # Same instance again: the spool file was atomically replaced with the new
                # bytes; keep the row, refresh what could differ, no new work.
                conn.execute(update(Instance)
                             .where(Instance.sop_instance_uid == r.sop_instance_uid)
                             .values(size=r.size, sha256=r.sha256))
                return
            touched = conn.execute(
                update(Study).where(Study.study_instance_uid == r.study_instance_uid)
                .values(last_received_at=t, assembled_at=None)  # a new instance re-opens it
            )
            if touched.rowcount == 0:
                conn.execute(insert(Study).values(
                    study_instance_uid=r.study_instance_uid, first_received_at=t,
                    last_received_at=t, outcome=""))


class AssociationRecorder:
    """The listener's ``on_association`` callback: one row per association."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def __call__(self, rec: AssociationRecord) -> None:
        with self.db.session() as s:
            s.add(AssociationLog(
                calling_ae=rec.calling_ae[:16], called_ae=rec.called_ae[:16], peer=rec.peer[:64],
                started_at=rec.started_at, ended_at=rec.ended_at, stored=rec.stored,
                failed=rec.failed, outcome=rec.outcome, statuses=json.dumps(rec.statuses),
            ))
            s.commit()
