"""Process liveness: each gateway or worker process keeps a heartbeat row alive.

A job names its holder; the holder's heartbeat is its claim.  When a process dies its
beats stop, and the reconciler (``worker.pipeline.reconciler``) takes its jobs over once the
cluster-wide ``liveness_timeout_seconds`` (the gateway's setting) has passed; on the same
host, a holder whose pid is gone is known dead at once.  This replaces per-job leases,
whose length was each worker's own setting and which also expired on jobs that merely
waited.
"""

from __future__ import annotations

import logging
import os
import socket
import threading

from sqlalchemy import select, update

from worker.store.db import Database, WorkerProcess, now

log = logging.getLogger(__name__)


def default_name(kind: str) -> str:
    """Unique per process by default: ``<kind>-<pid>@<host>``."""
    return f"{kind}-{os.getpid()}@{socket.gethostname()}"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class Liveness:
    """Registers this process and beats every ``interval`` seconds until stopped."""

    def __init__(self, db: Database, name: str, kind: str, queues: str = "",
                 interval: float = 5.0) -> None:
        self.db, self.name, self.kind, self.queues = db, name, kind, queues
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        t = now()
        with self.db.session() as s:
            row = s.get(WorkerProcess, self.name)
            if row is None:
                s.add(WorkerProcess(name=self.name, kind=self.kind, host=socket.gethostname(),
                                    pid=os.getpid(), queues=self.queues, started_at=t,
                                    last_beat=t, stopped_at=None))
            else:  # a name given again (a restarted named worker): a new life
                row.kind, row.pid, row.queues = self.kind, os.getpid(), self.queues
                row.started_at, row.last_beat, row.stopped_at = t, t, None
            s.commit()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)
        self._thread.start()

    def beat(self) -> None:
        with self.db.session() as s:
            s.execute(update(WorkerProcess).where(WorkerProcess.name == self.name)
                      .values(last_beat=now()))
            s.commit()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.beat()
            except Exception as exc:  # a missed beat only brings a takeover closer
                log.warning("heartbeat of %s failed: %s", self.name, exc)

    def stop(self) -> None:
        """Say we are gone, so that our jobs are taken over at once, not after a timeout."""
        self._stop.set()
        try:
            with self.db.session() as s:
                s.execute(update(WorkerProcess).where(WorkerProcess.name == self.name)
                          .values(stopped_at=now()))
                s.commit()
        except Exception as exc:  # the timeout will do it
            log.warning("cannot record that %s stopped: %s", self.name, exc)


def mark_dead_local_processes(db: Database) -> list[str]:
    """Processes recorded on this host whose pid no longer runs: stopped, as of now."""
    host = socket.gethostname()
    dead = []
    with db.session() as s:
        rows = s.scalars(select(WorkerProcess).where(WorkerProcess.host == host,
                                                     WorkerProcess.stopped_at.is_(None))).all()
        for row in rows:
            if row.pid != os.getpid() and not pid_alive(row.pid):
                row.stopped_at = now()
                dead.append(row.name)
        s.commit()
    return dead


def live_names(db: Database, timeout: float) -> set[str]:
    """Names of processes that beat within ``timeout`` seconds and have not stopped."""
    with db.session() as s:
        return set(s.scalars(select(WorkerProcess.name).where(
            WorkerProcess.stopped_at.is_(None), WorkerProcess.last_beat >= now() - timeout)))
