"""How many requests to keep in flight on an inference engine whose size nobody told us.

An engine such as vLLM generates up to ``max_num_seqs`` sequences at once (256 by default,
more on large cards) and queues the rest.  Offered fewer, it idles; offered far more, its
queue grows, and a live study sent later waits behind every batch request already inside.
The right number is the engine's, and several workers may share one engine, so it is
found, not configured: ``InFlightWindow`` is the figure one worker keeps in flight, moved
by what the engine shows.

* With vLLM's Prometheus gauges (``vllm:num_requests_running``/``..._waiting``, read by
  ``models.vllm_metrics``): while this worker uses its whole window and fewer than
  ``target_waiting`` wait, the window grows, doubling until a queue first forms and by
  that target after (the engine's size is near), and shrinks by its share of the excess
  when more than twice ``target_waiting`` wait (a short queue, never empty, so a slot that
  frees is refilled at once).  Workers sharing the engine each give back their share, so
  together they settle where it is full.
* Without them (another server): latency.  Each reply's seconds are compared with the
  fastest seen for its kind of turn; while replies come back that fast the window grows
  (doubling per round trip until the first sign of a queue, then a few per round trip),
  and a reply half again as slow (a queue in front of the engine) or a 429/503 cuts it,
  at most once per round trip, AIMD as TCP does it.

``ceiling`` (CXR_OPENAI_MAX_IN_FLIGHT) is a limit a site may set; the window never passes
it.  Pure arithmetic, no I/O, no clock of its own: the caller passes ``now``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

START = 64  # the old fixed default: two doublings less to a large engine, harmless to a small one
QUEUED_LATENCY = 1.5  # a reply this many times slower than the fastest: it queued
CUT = 0.75  # what is left of the window after a latency rise
OVERLOAD_CUT = 0.5  # ... and after a 429/503


@dataclass(frozen=True)
class EngineLoad:
    """The engine's own gauges: sequences generating, requests waiting for a slot."""

    running: float
    waiting: float


def target_waiting(running: float) -> int:
    """The queue worth keeping in the engine: enough that a freed slot is refilled before
    our next request could arrive, short enough that a live study barely waits."""
    return max(2, math.ceil(0.05 * running))


class InFlightWindow:
    """The number of requests one worker keeps in flight on one engine."""

    def __init__(self, ceiling: int, start: int = START) -> None:
        if ceiling < 1:
            raise ValueError("the in-flight ceiling must be at least 1")
        self.ceiling = ceiling
        self.size = float(min(start, ceiling))
        self.source = "latency"  # "engine metrics" once the engine's gauges were read
        self.slow_start = True
        self._fastest: dict[str, float] = {}
        self._last_cut = -math.inf

    @property
    def limit(self) -> int:
        """How many requests may be in flight now."""
        return max(1, min(self.ceiling, int(self.size)))

    def _set(self, size: float) -> None:
        self.size = max(1.0, min(float(self.ceiling), size))

    def _round_trip(self) -> float:
        return max(self._fastest.values(), default=0.0)

    def _cut(self, factor: float, now: float) -> None:
        """Shrink once per round trip: the replies of one queue all come back slow, and
        each is the same news."""
        if now - self._last_cut < self._round_trip():
            return
        self._last_cut = now
        self.slow_start = False
        self._set(self.size * factor)

    def on_reply(self, kind: str, seconds: float, in_flight: int, now: float) -> None:
        """A reply came back after ``seconds``; ``in_flight`` counts it still."""
        fastest = min(self._fastest.get(kind, math.inf), max(seconds, 1e-6))
        self._fastest[kind] = fastest
        if self.source != "latency":
            return
        if seconds > QUEUED_LATENCY * fastest:
            self._cut(CUT, now)
        elif in_flight >= self.limit - 1:  # only a window in use is worth growing
            self._set(self.size + (1.0 if self.slow_start else 4.0 / self.size))

    def on_overload(self, now: float) -> None:
        """The engine refused a request as too busy (429, 503)."""
        self._cut(OVERLOAD_CUT, now)

    def on_load(self, load: EngineLoad, in_flight: int) -> None:
        """The engine's gauges, read now; ``in_flight`` is this worker's share of them."""
        self.source = "engine metrics"
        target = target_waiting(load.running)
        # this worker's part of what the engine holds: each worker moves by its share, so
        # that together they move by what the engine shows, however many they are
        share = min(1.0, in_flight / max(1.0, load.running + load.waiting))
        if load.waiting >= target:
            self.slow_start = False  # a queue formed: the engine's size is near
        # grow only a window in use, and only once the engine shows what was sent (a
        # request on its way is neither running nor waiting yet: growing on a reading
        # that misses them doubles into a queue no one has seen)
        caught_up = load.running + load.waiting >= 0.9 * in_flight
        if load.waiting < target:
            if in_flight >= self.limit - 1 and caught_up:
                self._set(self.size * 2 if self.slow_start else
                          self.size + max(1.0, (target - load.waiting) * share))
        elif load.waiting > 2 * target:
            # give back this worker's share of the excess, counted from what it has out
            # now (requests already sent cannot be withdrawn, and the next reading shows
            # the same queue until they finish: it must not be given back twice)
            self._set(min(self.size, in_flight - (load.waiting - target) * share))
