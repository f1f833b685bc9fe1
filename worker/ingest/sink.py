"""Recording received instances: the listener's sink.

Runs inside the C-STORE handler, before the acknowledgement, so it does only what
the promise needs: one committed row per instance and the study's arrival times.
A duplicate SOP Instance UID is success and creates no new work.

Group commit: several associations often wait on the database at the same moment.
The first of them to reach the commit becomes the leader and writes every instance
queued so far in one transaction; the others wait for that commit and are then
acknowledged.  A lone association pays no extra hop (its own thread commits), and
nothing is acknowledged before the transaction that holds its row has committed.
"""

from __future__ import annotations

import json
import socket
import threading
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text

from dicom_gateway.listen.listener import (
    AssociationRecord,
    ReceivedInstance,
    StorageListener,
    StorageUnavailable,
)
from dicom_gateway.listen.slots import AssociationSlots
from worker.runtime import Runtime
from worker.store.db import AssociationLog, Database, now

# Plain SQL both SQLite (3.24+) and PostgreSQL accept: one statement per table, so an
# instance costs two round trips inside the transaction and no read-modify-write.
_INSERT_INSTANCE = text(
    "INSERT INTO instances (sop_instance_uid, sop_class_uid, study_instance_uid, "
    "series_instance_uid, modality, transfer_syntax_uid, path, size, sha256, calling_ae, "
    "peer, received_at, admission, skip_reason) VALUES (:sop_instance_uid, :sop_class_uid, "
    ":study_instance_uid, :series_instance_uid, :modality, :transfer_syntax_uid, :path, "
    ":size, :sha256, :calling_ae, :peer, :received_at, 'pending', '') "
    "ON CONFLICT (sop_instance_uid) DO NOTHING")
# Same instance again: the spool file was atomically replaced with the new bytes; keep
# the row, refresh what could differ, create no new work.
_REFRESH_INSTANCE = text(
    "UPDATE instances SET size = :size, sha256 = :sha256 "
    "WHERE sop_instance_uid = :sop_instance_uid")
# A new instance (re)opens its study: the quiet period starts again.
_TOUCH_STUDY = text(
    "INSERT INTO studies (study_instance_uid, first_received_at, last_received_at, outcome) "
    "VALUES (:study_instance_uid, :received_at, :received_at, '') "
    "ON CONFLICT (study_instance_uid) DO UPDATE SET "
    "last_received_at = excluded.last_received_at, assembled_at = NULL")


@dataclass
class _Waiting:
    """One handler's instance, queued for the next commit."""

    values: dict[str, Any]
    done: bool = False
    error: BaseException | None = None


class InstanceRecorder:
    """The ``Sink`` the listener calls; raises StorageUnavailable if nothing was recorded."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._queue: list[_Waiting] = []
        self._queue_lock = threading.Lock()
        self._commit_lock = threading.Lock()
        self.commits = 0  # transactions committed (the benchmark reads instances/commit)

    def __call__(self, received: ReceivedInstance) -> None:
        item = _Waiting(self._values(received))
        with self._queue_lock:
            self._queue.append(item)
        with self._commit_lock:
            # Either an earlier leader already committed us while we waited for the
            # lock, or we lead: everything queued now goes into one transaction.
            if not item.done:
                with self._queue_lock:
                    batch, self._queue = self._queue, []
                self._commit(batch)
        if item.error is not None:
            raise item.error

    @staticmethod
    def _values(r: ReceivedInstance) -> dict[str, Any]:
        return {
            "sop_instance_uid": r.sop_instance_uid, "sop_class_uid": r.sop_class_uid,
            "study_instance_uid": r.study_instance_uid,
            "series_instance_uid": r.series_instance_uid, "modality": r.modality,
            "transfer_syntax_uid": r.transfer_syntax_uid, "path": str(r.path), "size": r.size,
            "sha256": r.sha256, "calling_ae": r.calling_ae, "peer": r.peer,
            "received_at": now(),
        }

    def _commit(self, batch: list[_Waiting]) -> None:
        """Commit the batch in one transaction; if that fails, each on its own.

        Alone, one instance's failure (a value the database refuses) must not cost the
        others their acknowledgement; a database that is down fails each in turn.
        """
        try:
            self._write([w.values for w in batch])
        except Exception as exc:
            if len(batch) == 1:
                self._fail(batch[0], exc)
            else:
                for w in batch:
                    try:
                        self._write([w.values])
                    except Exception as each:
                        self._fail(w, each)
        for w in batch:
            w.done = True

    @staticmethod
    def _fail(w: _Waiting, exc: Exception) -> None:
        w.error = StorageUnavailable(f"database unavailable: {exc}")
        w.error.__cause__ = exc

    def _write(self, rows: list[dict[str, Any]]) -> None:
        with self.db.writers_turn(), self.db.engine.begin() as conn:
            for values in rows:
                if conn.execute(_INSERT_INSTANCE, values).rowcount == 0:
                    conn.execute(_REFRESH_INSTANCE, values)
                    continue
                conn.execute(_TOUCH_STUDY, values)
        self.commits += 1


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


def storage_listener(rt: Runtime, port: int, slots: AssociationSlots | None = None,
                     channel: socket.socket | None = None) -> StorageListener:
    """The listener as ``serve`` runs it, in its own process or in a listener process.

    pynetdicom writes each incoming dataset to a temporary file: the process that calls
    this has pointed Python's temporary folder at the spool's own ``.tmp`` first
    (``worker.runtime.keep_temporary_files_in_spool``), so taking one into the spool is
    a rename.
    """
    s = rt.settings
    return StorageListener(
        s.ae_title, s.host, port, rt.spool, InstanceRecorder(rt.db),
        allowed_calling_aets=s.allowed_calling_aets, limits=s.limits, tls=s.tls,
        on_association=AssociationRecorder(rt.db), slots=slots, channel=channel)
