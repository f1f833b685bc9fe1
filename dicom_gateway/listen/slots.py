"""One association limit shared by several listener processes on one port.

serve hands each new connection to one of several listener processes
(``dicom_gateway/listen/dispatch.py``); each process's pynetdicom only counts its own
associations.  The limit the operator set (``max_associations``) must still hold for the
port as a whole, so every accepted association holds one *slot*: an exclusive ``flock``
on one of N files in a shared folder.  No slot free means A-ASSOCIATE-RJ, transient,
local limit exceeded.

Why ``flock`` on files rather than a counter in shared memory or the database: the
kernel releases a lock when the process holding it dies, so a SIGKILLed listener cannot
leak slots, and nobody has to clean up after it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Slot:
    """A held slot: the open descriptor that carries the lock, and its number."""

    fd: int
    number: int


class AssociationSlots:
    """N lock files in ``folder``; :meth:`acquire` takes a free one or returns None."""

    def __init__(self, folder: Path, count: int) -> None:
        if count < 1:
            raise ValueError("an association limit needs at least one slot")
        self.folder = folder
        self.count = count
        folder.mkdir(parents=True, exist_ok=True)
        for n in range(count):
            self._path(n).touch(exist_ok=True)

    def _path(self, number: int) -> Path:
        return self.folder / f"slot-{number:04d}"

    def acquire(self) -> Slot | None:
        """Lock one free slot, trying them from a random start (few collisions)."""
        start = random.randrange(self.count)
        for i in range(self.count):
            number = (start + i) % self.count
            fd = os.open(self._path(number), os.O_RDWR | os.O_CLOEXEC)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            except BaseException:
                os.close(fd)
                raise
            return Slot(fd, number)
        return None

    @staticmethod
    def release(slot: Slot) -> None:
        """Give the slot back (closing the descriptor drops the lock)."""
        with contextlib.suppress(OSError):
            os.close(slot.fd)

    def held(self) -> int:
        """How many slots are held right now, by any process (for tests and status)."""
        busy = 0
        for n in range(self.count):
            fd = os.open(self._path(n), os.O_RDWR | os.O_CLOEXEC)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                busy += 1
            finally:
                os.close(fd)
        return busy
