"""Failed logins counted per client address, so the login form is no oracle to guess at.

A named token is 256 random bits and the operator token at least 32 characters, so
guessing cannot succeed; what a stranger can do is make the service check guesses as
fast as it answers.  After ``allowed`` failures from one address within ``window``
seconds, ``/login`` answers 429 with ``Retry-After`` until the oldest failure leaves the
window.  At most ``addresses`` addresses are remembered (the least recent are forgotten
first), so a stranger with many addresses costs bounded memory.  Counted per process:
``serve``'s service and a separate ``cxr-gateway api`` each keep their own.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable

WINDOW_SECONDS = 15 * 60.0


class FailedLogins:
    """Failures per address in a sliding window; thread-safe (routes run in a pool)."""

    def __init__(self, allowed: int, window: float = WINDOW_SECONDS, addresses: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.allowed, self.window, self.addresses, self._clock = (allowed, window,
                                                                  addresses, clock)
        self._seen: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def _recent(self, address: str, t: float) -> deque[float]:
        times = self._seen.get(address, deque())
        while times and times[0] <= t - self.window:
            times.popleft()
        return times

    def retry_after(self, address: str) -> int | None:
        """Seconds until ``address`` may try again, or None if it may now."""
        with self._lock:
            t = self._clock()
            times = self._recent(address, t)
            if len(times) < self.allowed:
                return None
            return max(1, math.ceil(times[0] + self.window - t))

    def failed(self, address: str) -> None:
        with self._lock:
            t = self._clock()
            times = self._recent(address, t)
            times.append(t)
            self._seen[address] = times
            self._seen.move_to_end(address)
            while len(self._seen) > self.addresses:
                self._seen.popitem(last=False)

    def succeeded(self, address: str) -> None:
        with self._lock:
            self._seen.pop(address, None)
