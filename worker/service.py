"""The ``serve`` process: listener, study assembler, reconciler and (optionally) a worker.

The in-process worker takes the ``cpu`` queue (prepare, report: the steps that read the
spool and write the outbox, which live on this node) and, on the embedded default, the
``gpu`` queue too.  GPU workers elsewhere need no shared filesystem: the model input
travels in the database.

Start-up order matters for "nothing acknowledged is lost": migrate, sweep partial
spool writes, register this process's heartbeat, mark dead the earlier processes of
this host, resume every unfinished job from the database, and only then open the
DICOM port.  Stopping never waits long: what is in flight is left to the reconciler.

Once started, the process's periodic duties (assemble quiet studies, reconcile jobs
with the database, restart a dead listener process or in-process worker, purge old
skipped studies) run in turn on one thread, ``serve-duties``, every ``poll_seconds``:
one thread, so that on SQLite they never contend with each other for the one writer.
Each duty has a name, and a failing duty is logged by that name without keeping the
others from their turn.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dicom_gateway.listen.listener import StorageListener
from dicom_gateway.listen.pynetdicom import canary as pynetdicom_canary
from worker.ingest import assembler
from worker.ingest.processes import ListenerProcesses
from worker.ingest.routing import LiveRules
from worker.ingest.sink import storage_listener
from worker.pipeline.celery_app import configure_celery, purge_embedded_queue, queue_depth
from worker.pipeline.reconciler import Reconciler
from worker.runtime import Runtime, configure, keep_temporary_files_in_spool
from worker.settings import Settings
from worker.store.liveness import Liveness, mark_dead_local_processes
from worker.store.retention import purge_skipped

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Duty:
    """One periodic duty of the serve process, named for the logs."""

    name: str
    run: Callable[[], object]


class ServeProcess:
    """Everything ``cxr-gateway serve`` runs, startable and stoppable in-process."""

    def __init__(self, settings: Settings,
                 worker_queues: tuple[str, ...] = ("cpu", "gpu"),
                 config_file: Path | None = None) -> None:
        self.settings = settings
        self.worker_queues = worker_queues
        self.routing = LiveRules(settings, config_file)  # reloaded on SIGHUP or a change
        self.rt: Runtime | None = None
        self.listener: StorageListener | None = None
        self.listener_processes: ListenerProcesses | None = None
        self.liveness: Liveness | None = None
        self.reconciler: Reconciler | None = None
        self.api: Any = None
        self._worker: Any = None
        self._worker_app: Any = None
        self._worker_name = ""
        self._worker_thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._duties_thread: threading.Thread | None = None

    def start(self) -> None:
        """Start in the order the module docstring gives; raises what stopped it."""
        s = self.settings
        self.rt = rt = configure(s, kind="serve")
        swept = rt.spool.sweep_partials() + rt.outbox.sweep_partials()
        if swept:
            log.warning("removed %d partial file(s) left by an earlier crash", swept)
        keep_temporary_files_in_spool(rt)
        app = configure_celery(s)
        self.liveness = Liveness(rt.db, rt.worker_name, "serve", ",".join(self.worker_queues),
                                 s.heartbeat_seconds)
        self.liveness.start()
        dead = mark_dead_local_processes(rt.db)
        if dead:
            log.info("earlier processes on this host are gone: %s", ", ".join(dead))
        self._resume_from_database()
        if self.worker_queues:
            self._start_worker(app, rt.worker_name)
        self._open_listener(rt)
        if s.api_port:
            self._start_api(rt)
        self._duties_thread = threading.Thread(target=self._run_duties, name="serve-duties",
                                               daemon=True)
        self._duties_thread.start()
        self._log_summary()

    def _resume_from_database(self) -> None:
        """Publish every unfinished job again (the embedded queue starts empty)."""
        from worker.pipeline import tasks

        assert self.rt is not None
        s = self.settings
        if s.embedded_broker:
            purge_embedded_queue(s)
        self.reconciler = Reconciler(self.rt.db, s, tasks.PUBLISHERS, queue_depth)
        sweep = self.reconciler.run(force=s.embedded_broker)
        resumed = len(sweep.taken_over) + len(sweep.republished) + len(sweep.due)
        if resumed:
            log.info("resumed %d unfinished job(s) from the database", resumed)

    def _open_listener(self, rt: Runtime) -> None:
        """Several listener processes need pynetdicom's server code as reviewed (else: one,
        in this process, stock)."""
        s = self.settings
        if s.listener_processes > 1 and \
                pynetdicom_canary.checked_at_start().usable("handed_connections", "slot_limit"):
            self.listener_processes = ListenerProcesses(s, s.listener_processes)
            self.listener_processes.start()
        else:
            self.listener = storage_listener(rt, s.port)
            self.listener.start()

    def _start_api(self, rt: Runtime) -> None:
        from worker.ops.api import APIServer, Broker, create_app
        from worker.ops.api.limits import HttpLimits
        from worker.pipeline import tasks

        s = self.settings
        broker = Broker(tasks.enqueue_prepare, tasks.enqueue_question, tasks.enqueue_addendum)
        self.api = APIServer(create_app(s, rt.db, queue_depth, broker), s.api_host, s.api_port,
                             HttpLimits.of(s))
        self.api.start()

    def _log_summary(self) -> None:
        """What this gateway is, in one place at start-up (no secrets: URLs masked)."""
        from worker.logs import mask_url

        s = self.settings
        backend = s.model_backend + (" (MOCK: no model reads the images)"
                                     if s.model_backend == "mock" else "")
        log.info("listener %s on %s:%s%s; destinations: %s; model backend: %s; broker: %s; "
                 "database: %s; in-process worker queues: %s; HTTP: %s", s.ae_title, s.host,
                 self.port, " (TLS)" if s.tls else "",
                 ", ".join(str(d) for d in s.destinations) or "none",
                 backend, mask_url(s.broker_url), mask_url(s.effective_database_url),
                 ",".join(self.worker_queues) or "none",
                 f"http://{s.api_host}:{s.api_port}/" if s.api_port else "off")
        if not s.destinations:
            log.warning("no destinations (CXR_DESTINATIONS is empty): SRs are written to "
                        "%s only", s.outbox_dir)

    def _start_worker(self, app: Any, name: str) -> None:
        self._worker_app, self._worker_name = app, name
        self._worker = app.WorkController(
            app=app, concurrency=1, pool="solo", hostname=name,
            queues=list(self.worker_queues), without_heartbeat=True, without_mingle=True,
            without_gossip=True, loglevel="WARNING",
        )
        self._worker_thread = threading.Thread(target=self._worker.start, name="celery-worker",
                                               daemon=True)
        self._worker_thread.start()

    def duties(self) -> list[Duty]:
        """The periodic duties, in the order each tick runs them."""
        assert self.rt is not None and self.reconciler is not None
        from worker.pipeline import tasks

        db, s = self.rt.db, self.settings
        duties = [
            Duty("assemble quiet studies", lambda: (
                self.routing.check(),  # reload the routing rules first, if asked or edited
                assembler.assemble_ready(db, s.study_quiet_seconds, tasks.enqueue_prepare,
                                         s.batch_calling_aets, self.routing.current(),
                                         s.ae_title))),
            Duty("reconcile jobs with the database", self.reconciler.run),
        ]
        if self.listener_processes is not None:
            duties.append(Duty("supervise listener processes",
                               self.listener_processes.supervise))
        duties += [
            Duty("supervise the in-process worker", self._supervise_worker),
            Duty("purge skipped studies",
                 lambda: purge_skipped(db, s.skipped_retention_hours * 3600)),
        ]
        return duties

    def _run_duties(self) -> None:
        duties = self.duties()
        while not self._stop.wait(self.settings.poll_seconds):
            for duty in duties:
                if self._stop.is_set():
                    return
                try:
                    duty.run()
                except Exception:  # keep serving; the next tick retries from the database
                    log.exception("serve duty %r failed; retried next tick", duty.name)

    def _supervise_worker(self) -> None:
        """Start the in-process Celery worker again if it ended on its own.

        Celery ends a worker on an "unrecoverable" consumer error (a broker message it
        cannot parse, say); the jobs stay in the database, so a new worker picks them up.
        """
        thread = self._worker_thread
        if thread is None or thread.is_alive() or self._stop.is_set():
            return
        log.error("the in-process worker (queues %s) stopped on its own; starting it again",
                  ",".join(self.worker_queues))
        self._start_worker(self._worker_app, self._worker_name)

    @property
    def port(self) -> int:
        if self.listener_processes is not None:
            return self.listener_processes.port
        assert self.listener is not None
        return self.listener.port

    def stop(self) -> None:
        """Close the port, stop the loops, say we are gone; in-flight work is taken over."""
        self._stop.set()
        if self.rt is not None:  # the in-process worker takes no new job from here on
            self.rt.stopping.set()
        if self.api is not None:
            self.api.stop()
        if self.listener is not None:
            self.listener.stop()
        if self.listener_processes is not None:
            self.listener_processes.stop()
        if self._duties_thread is not None:
            self._duties_thread.join(timeout=5)
        if self.liveness is not None:
            self.liveness.stop()
        if self._worker is not None:
            self._worker.stop(in_sighandler=False)
            if self._worker_thread is not None:
                self._worker_thread.join(timeout=5)
        if self.rt is not None:  # studies in flight on an engine finish, or are put back
            from worker.pipeline import inflight

            inflight.drain(self.rt, self.settings.shutdown_grace_seconds)
