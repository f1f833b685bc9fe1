"""Per-process resources the tasks use: settings, database, spool, outbox, model backend.

Built once at process start by ``configure`` (serve, worker, the CLI's commands, a
listener process); the model backend loads lazily on first use so CPU-only processes
never import the model stack.

Process-global state, and why each is global:

- The configured ``Runtime`` (read by ``runtime()``): a Celery task receives only its
  message (job id, version), so the task functions need a process-wide handle on the
  database and the rest.  ``configure`` sets it; nothing else does.
- Python's temporary folder (``tempfile.tempdir``), in ``serve`` and each listener
  process only: pynetdicom writes every incoming dataset to a temporary file and has no
  per-listener setting for where, so ``keep_temporary_files_in_spool`` points the whole
  process at the spool's own ``.tmp`` (same disk: moving a file into the spool is a
  rename; swept at start).
- The Celery app: see ``worker.pipeline.celery_app``.
"""

from __future__ import annotations

import os
import tempfile
import threading
from dataclasses import dataclass, field

from dicom_gateway.spool import DurableFolder
from models.backend import Backend
from models.registry import get_backend
from worker.settings import Settings
from worker.store.db import Database
from worker.store.liveness import default_name


@dataclass
class Runtime:
    settings: Settings
    db: Database
    spool: DurableFolder
    outbox: DurableFolder
    worker_name: str = "unnamed"
    _backend: Backend | None = None
    _seed: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    # Set when the process is shutting down: long-running stages stop taking new jobs
    # (the GPU worker's in-flight loop) and finish what they hold within the grace.
    stopping: threading.Event = field(default_factory=threading.Event)

    @property
    def installation_seed(self) -> str:
        """This database's identity, the root of every UID the gateway creates."""
        if self._seed is None:
            self._seed = self.db.installation_seed()
        return self._seed

    @property
    def backend(self) -> Backend:
        with self._lock:
            if self._backend is None:
                self._backend = get_backend(self.settings.backend_config())
            return self._backend


_process_runtime: Runtime | None = None  # see the module docstring


def keep_private(settings: Settings) -> None:
    """Spool, outbox, previews and the database: readable by the service user only, also
    when the folders were made before (by another umask, or by hand)."""
    for folder in (settings.data_dir, settings.spool_dir, settings.outbox_dir,
                   settings.previews_dir):
        folder.mkdir(parents=True, exist_ok=True)
        os.chmod(folder, 0o700)
    for db_file in settings.data_dir.glob("gateway.db*"):
        os.chmod(db_file, 0o600)


def configure(settings: Settings, migrate: bool = True, kind: str = "serve") -> Runtime:
    """This process's resources; ``kind`` names it (``serve-<pid>@host``) unless
    ``CXR_WORKER_NAME`` does."""
    global _process_runtime
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.effective_database_url)
    if migrate:
        db.migrate()
        db.installation_seed()  # created with the database, kept for its lifetime
    keep_private(settings)
    _process_runtime = Runtime(settings, db, DurableFolder(settings.spool_dir),
                       DurableFolder(settings.outbox_dir),
                       worker_name=settings.worker_name or default_name(kind))
    return _process_runtime


def runtime() -> Runtime:
    """This process's resources, as ``configure`` made them (the tasks' way in)."""
    if _process_runtime is None:
        raise RuntimeError("worker runtime not configured (call worker.runtime.configure)")
    return _process_runtime


def keep_temporary_files_in_spool(rt: Runtime) -> None:
    """Point this process's temporary files at the spool's ``.tmp``: pynetdicom's incoming
    datasets (and the embedded broker's consumed messages) then land on the spool's disk,
    where taking one into the spool is a rename and a crash's leftovers are swept at
    start.  Process-wide by nature (``tempfile`` has one folder per process): called once,
    at the start of a process that listens (``serve``, a listener process)."""
    tempfile.tempdir = str(rt.spool.tmp)
