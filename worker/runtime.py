"""Per-process resources the tasks use: settings, database, spool, outbox, model backend.

Built once by ``configure`` (serve, worker, demo); the model backend loads lazily on
first use so CPU-only processes never import the model stack.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field

from dicom_gateway.spool import Spool
from models.backend import Backend
from models.registry import get_backend
from worker.settings import Settings
from worker.store.db import Database
from worker.store.liveness import default_name


@dataclass
class Runtime:
    settings: Settings
    db: Database
    spool: Spool
    outbox: Spool
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


_current: Runtime | None = None


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
    global _current
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.effective_database_url)
    if migrate:
        db.migrate()
        db.installation_seed()  # created with the database, kept for its lifetime
    keep_private(settings)
    _current = Runtime(settings, db, Spool(settings.spool_dir), Spool(settings.outbox_dir),
                       worker_name=settings.worker_name or default_name(kind))
    return _current


def runtime() -> Runtime:
    if _current is None:
        raise RuntimeError("worker runtime not configured (call worker.runtime.configure)")
    return _current
