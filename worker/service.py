"""The ``serve`` process: listener, study assembler, reconciler and (optionally) a worker.

The in-process worker takes the ``cpu`` queue (prepare, report: the steps that read the
spool and write the outbox, which live on this node) and, on the embedded default, the
``gpu`` queue too.  GPU workers elsewhere need no shared filesystem: the model input
travels in the database.

Start-up order matters for "nothing acknowledged is lost": migrate, sweep partial
spool writes, re-enqueue every unfinished job from the database, and only then open
the DICOM port.
"""

from __future__ import annotations

import logging
import socket
import tempfile
import threading
from typing import Any

from dicom_gateway.listener import StorageListener
from worker import assembler, reconciler
from worker.celery_app import configure_celery, purge_embedded_queue
from worker.ingest import AssociationRecorder, InstanceRecorder
from worker.retention import purge_skipped
from worker.runtime import Runtime, configure
from worker.settings import Settings

log = logging.getLogger(__name__)


class Gateway:
    """Everything ``cxr-gateway serve`` runs, startable and stoppable in-process."""

    def __init__(self, settings: Settings,
                 worker_queues: tuple[str, ...] = ("cpu", "gpu")) -> None:
        self.settings = settings
        self.worker_queues = worker_queues
        self.rt: Runtime | None = None
        self.listener: StorageListener | None = None
        self._worker: Any = None
        self._worker_thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._loop_thread: threading.Thread | None = None

    def start(self) -> None:
        from worker import tasks  # noqa: F401 - registers the tasks with the app

        s = self.settings
        self.rt = configure(s)
        swept = self.rt.spool.sweep_partials() + self.rt.outbox.sweep_partials()
        if swept:
            log.warning("removed %d partial file(s) left by an earlier crash", swept)
        app = configure_celery(s)
        if s.embedded_broker:
            purge_embedded_queue(s)
        n = reconciler.reconcile(self.rt.db, s.job_lease_seconds, tasks.enqueue_prepare,
                                 tasks.enqueue_report, tasks.enqueue_infer,
                                 force=s.embedded_broker)
        if n:
            log.info("resumed %d unfinished job(s) from the database", n)
        if self.worker_queues:
            self._start_worker(app)
        # pynetdicom writes each incoming dataset to a temporary file: keep those in the
        # spool's own .tmp so moving one into the spool is a rename, not a copy.
        tempfile.tempdir = str(self.rt.spool.tmp)
        self.listener = StorageListener(
            s.ae_title, s.host, s.port, self.rt.spool, InstanceRecorder(self.rt.db),
            allowed_calling_aets=s.allowed_calling_aets, limits=s.limits, tls=s.tls,
            on_association=AssociationRecorder(self.rt.db),
        )
        self.listener.start()
        self._loop_thread = threading.Thread(target=self._loop, name="assembler", daemon=True)
        self._loop_thread.start()

    def _start_worker(self, app: Any) -> None:
        self._worker = app.WorkController(
            app=app, concurrency=1, pool="solo", hostname=f"cxr@{socket.gethostname()}",
            queues=list(self.worker_queues), without_heartbeat=True, without_mingle=True,
            without_gossip=True, loglevel="WARNING",
        )
        self._worker_thread = threading.Thread(target=self._worker.start, name="celery-worker",
                                               daemon=True)
        self._worker_thread.start()

    def _loop(self) -> None:
        from worker import tasks

        assert self.rt is not None
        s = self.settings
        while not self._stop.wait(s.poll_seconds):
            try:
                assembler.assemble_ready(self.rt.db, s.study_quiet_seconds, s.job_lease_seconds,
                                         tasks.enqueue_prepare, s.batch_calling_aets)
                reconciler.reconcile(self.rt.db, s.job_lease_seconds, tasks.enqueue_prepare,
                                     tasks.enqueue_report, tasks.enqueue_infer)
                purge_skipped(self.rt.db, s.skipped_retention_hours * 3600)
            except Exception:  # keep serving; the next tick retries from the database
                log.exception("assembler/reconciler tick failed")

    @property
    def port(self) -> int:
        assert self.listener is not None
        return self.listener.port

    def stop(self) -> None:
        self._stop.set()
        if self.listener is not None:
            self.listener.stop()
        if self._loop_thread is not None:
            self._loop_thread.join(timeout=10)
        if self._worker is not None:
            self._worker.stop(in_sighandler=False)
            if self._worker_thread is not None:
                self._worker_thread.join(timeout=10)
