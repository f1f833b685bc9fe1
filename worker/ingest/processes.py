"""Several listener processes behind one DICOM port, so that associations use several
cores.

pynetdicom runs each association in Python threads of one interpreter: four senders at
once get about as much CPU as one (pynetdicom issue 917).  With
``CXR_LISTENER_PROCESSES`` above 1 (the default, ``auto``, is the cores the process may
use, so a one-core container keeps the in-process listener), ``serve`` starts that many
child processes instead of an in-process listener.  ``serve`` itself listens on the port
and hands every new connection to the child with the fewest open
(:class:`~dicom_gateway.listen.dispatch.ConnectionDispatcher`); each child answers
its associations, writes to the same spool and commits to the same database, so the
promise is unchanged: 0x0000 only after the file is fsynced and its row committed, by
the process that answers.

What stays one for the port as a whole: the allowlist and every other listener
setting (all children get the same settings), and the association limit, held in
``flock`` slot files (``dicom_gateway/listen/slots.py``) that the kernel frees
when a child dies.

Lifetimes: the parent binds the port first (so that port 0 works and a port in use is
one error before any child starts), waits until every child is ready, hands out
connections from then on, and asks the children to stop when it stops.  A child that
dies gets no more connections and is started again.  A child whose parent is gone
(SIGKILL) exits at once: in-flight transfers are cut before their answer, so the
senders retry them; nothing acknowledged is lost.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import socket
import threading
import time
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from dicom_gateway.listen.dispatch import ConnectionDispatcher
from dicom_gateway.listen.slots import AssociationSlots
from worker.ingest.sink import storage_listener
from worker.settings import Settings

log = logging.getLogger(__name__)

START_TIMEOUT = 60.0  # a child imports pydicom, pynetdicom and SQLAlchemy first
STOP_TIMEOUT = 5.0


class ListenerStartError(RuntimeError):
    """A listener process could not start (its message says which and why)."""


def slots_dir(settings: Settings) -> Path:
    return settings.data_dir / "run" / "association-slots"


def _child_main(settings: Settings, port: int, index: int, log_level: int,
                conn: Connection, channel: socket.socket) -> None:
    """One listener process: take the connections handed over ``channel``, answer them,
    exit when asked or when the parent is gone."""
    from worker import logs
    from worker.runtime import configure, keep_temporary_files_in_spool

    logs.configure(verbose=log_level <= logging.DEBUG, quiet=log_level >= logging.WARNING)
    try:
        rt = configure(settings, migrate=False, kind=f"listener{index}")
        keep_temporary_files_in_spool(rt)
        listener = storage_listener(
            rt, port, AssociationSlots(slots_dir(settings), settings.max_associations),
            channel=channel)
        listener.start()
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which fails start-up
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", os.getpid()))
    parent = multiprocessing.parent_process()
    watched: list[Any] = [conn] + ([parent.sentinel] if parent is not None else [])
    ready = wait(watched)
    if conn in ready:  # the parent asks us to stop: close the port, then go
        with contextlib.suppress(Exception):
            listener.stop()
    else:  # associations in flight are cut before their answer: senders retry
        log.warning("listener process %d: the serve process is gone; exiting", index)
    os._exit(0)


class ListenerProcesses:
    """``count`` listener processes behind ``settings.port``."""

    def __init__(self, settings: Settings, count: int) -> None:
        self.settings = settings
        self.count = count
        self.port = 0
        self._dispatcher: ConnectionDispatcher | None = None
        self._children: list[tuple[Any, Connection]] = []
        self._lock = threading.Lock()  # supervise (serve's duties thread) vs stop
        self._stopping = False

    def start(self) -> None:
        s = self.settings
        if s.tls is not None:
            s.tls.context()  # a bad certificate fails here, with its own message
        AssociationSlots(slots_dir(s), s.max_associations)  # the files exist before any child
        self._dispatcher = ConnectionDispatcher(s.host, s.port)  # OSError if the port is taken
        self.port = self._dispatcher.port
        try:
            self._children = [self._spawn(index) for index in range(self.count)]
            deadline = time.monotonic() + START_TIMEOUT
            for index, child in enumerate(self._children):
                self._wait_ready(index, child, deadline)
            self._dispatcher.start()
        except BaseException:
            self.stop()
            raise
        log.info("%d listener processes behind port %s, each new connection to the one with "
                 "fewest open; association limit %d for the port", self.count, self.port,
                 s.max_associations)

    def _spawn(self, index: int) -> tuple[Any, Connection]:
        assert self._dispatcher is not None
        ctx = multiprocessing.get_context("spawn")  # no fork of a process with threads
        parent_end, child_end = ctx.Pipe()
        channel = self._dispatcher.attach(index)
        proc = ctx.Process(target=_child_main, name=f"cxr-listener-{index}",
                           args=(self.settings, self.port, index,
                                 logging.getLogger().getEffectiveLevel(), child_end, channel),
                           daemon=True)
        proc.start()
        child_end.close()
        channel.close()  # the child has its own copy
        return proc, parent_end

    @staticmethod
    def _wait_ready(index: int, child: tuple[Any, Connection], deadline: float) -> None:
        proc, end = child
        if not end.poll(max(0.0, deadline - time.monotonic())):
            raise ListenerStartError(f"listener process {index} did not start within "
                               f"{START_TIMEOUT:.0f} s")
        try:
            status, detail = end.recv()
        except EOFError:
            raise ListenerStartError(f"listener process {index} exited at start "
                               f"(exit code {proc.exitcode})") from None
        if status != "ready":
            raise ListenerStartError(f"listener process {index} cannot start: {detail}")

    def supervise(self) -> int:
        """Start again every listener process that died (killed, out of memory); how many.

        Until then the dispatcher hands new connections to the processes still alive, so
        the port keeps answering, with fewer cores.
        """
        restarted = 0
        with self._lock:
            if not self._stopping:
                restarted = self._restart_dead()
        return restarted

    def _restart_dead(self) -> int:
        restarted = 0
        for index, (proc, end) in enumerate(self._children):
            if proc.is_alive():
                continue
            log.error("listener process %d (pid %s) exited with code %s; starting it again",
                      index, proc.pid, proc.exitcode)
            end.close()
            child = self._spawn(index)
            self._children[index] = child
            self._wait_ready(index, child, time.monotonic() + START_TIMEOUT)
            restarted += 1
        return restarted

    def pids(self) -> list[int]:
        return [proc.pid for proc, _ in self._children if proc.pid is not None]

    def stop(self) -> None:
        """Ask every child to stop; one that does not within STOP_TIMEOUT is killed."""
        self._stopping = True
        with self._lock:
            self._stop_children()

    def _stop_children(self) -> None:
        if self._dispatcher is not None:  # no new connections first
            self._dispatcher.stop()
            self._dispatcher = None
        for _, end in self._children:
            with contextlib.suppress(OSError):
                end.send("stop")
        deadline = time.monotonic() + STOP_TIMEOUT
        for proc, end in self._children:
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
                proc.join(1)
            end.close()
        self._children = []
