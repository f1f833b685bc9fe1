"""Each association's log entry and association slot, kept by the listener's handlers.

A record lives on its Association object.  It is written once: at the first of
released / aborted / rejected, or at connection close for a connection that never asked
for an association (pynetdicom may report the close of a rejected association before
the rejection itself).  A slot of the port's shared association limit
(:class:`~dicom_gateway.listen.slots.AssociationSlots`) is held from the
A-ASSOCIATE-RQ until the association ends.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pynetdicom import evt

from dicom_gateway.listen.pynetdicom.compat import OVER_LIMIT
from dicom_gateway.listen.slots import AssociationSlots, Slot
from dicom_gateway.listen.store_checks import STATUS_SUCCESS, Refusal

log = logging.getLogger("dicom_gateway.listen.listener")  # the listener's log, as before the split

MAX_REASONS = 5  # an association log entry keeps the first few distinct refusal reasons


@dataclass
class AssociationRecord:
    """One association's log entry, handed to ``on_association`` when the connection closes."""

    peer: str
    started_at: float
    calling_ae: str = ""
    called_ae: str = ""
    ended_at: float = 0.0
    stored: int = 0
    failed: int = 0
    outcome: str = "open"  # requested -> accepted -> released | aborted; or rejected
    statuses: dict[str, int] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)  # "0xA700: why", the first few


AssociationSink = Callable[[AssociationRecord], None]


class AssociationTracker:
    """The association log and slot bookkeeping of one listener (thread-safe: each
    association's handlers run in its own threads)."""

    def __init__(self, on_association: AssociationSink | None,
                 slots: AssociationSlots | None) -> None:
        self.on_association = on_association
        self.slots = slots
        self._lock = threading.Lock()

    def record(self, event: evt.Event) -> AssociationRecord:
        """This association's record, made on first use."""
        assoc: Any = event.assoc
        with self._lock:
            rec: AssociationRecord | None = getattr(assoc, "_cxr_record", None)
            if rec is None:
                req = assoc.requestor
                rec = AssociationRecord(peer=f"{req.address}:{req.port}", started_at=time.time())
                assoc._cxr_record = rec
            return rec

    def named(self, event: evt.Event) -> AssociationRecord:
        """The record, with the AE titles once the association request has named them."""
        rec = self.record(event)
        rec.calling_ae = rec.calling_ae or str(event.assoc.requestor.ae_title).strip()
        rec.called_ae = rec.called_ae or str(event.assoc.acceptor.ae_title).strip()
        return rec

    def take_slot(self, assoc: Any) -> None:
        """A slot for a requested association, or the mark that makes negotiation answer
        A-ASSOCIATE-RJ (transient, local limit exceeded)."""
        if self.slots is None:
            return
        slot = self.slots.acquire()
        if slot is None:
            setattr(assoc, OVER_LIMIT, True)
            log.warning("association from %s:%s rejected: all %d association slots "
                        "of this port are busy", assoc.requestor.address,
                        assoc.requestor.port, self.slots.count)
        else:
            with self._lock:
                assoc._cxr_slot = slot

    def release_slot(self, assoc: Any) -> None:
        with self._lock:
            slot: Slot | None = getattr(assoc, "_cxr_slot", None)
            assoc._cxr_slot = None
        if slot is not None and self.slots is not None:
            self.slots.release(slot)

    def outcome_handler(self, outcome: str) -> Callable[[evt.Event], None]:
        """The handler of EVT_ACCEPTED, _REJECTED, _RELEASED or _ABORTED."""
        def handler(event: evt.Event) -> None:
            rec = self.named(event)  # a rejection comes before EVT_REQUESTED
            if outcome == "accepted":
                rec.outcome = outcome
            else:
                self.release_slot(event.assoc)
                self.finish(rec, outcome)
        return handler

    def count_store(self, event: evt.Event, outcome: int | Refusal) -> None:
        """Count one C-STORE's outcome, keeping the first few distinct reasons."""
        rec = self.record(event)
        if outcome == STATUS_SUCCESS:
            rec.stored += 1
            return
        refusal = outcome if isinstance(outcome, Refusal) else Refusal(int(outcome), "")
        rec.failed += 1
        key = f"0x{refusal.status:04X}"
        rec.statuses[key] = rec.statuses.get(key, 0) + 1
        reason = f"{key}: {refusal.reason}"
        if refusal.reason and reason not in rec.reasons and len(rec.reasons) < MAX_REASONS:
            rec.reasons.append(reason)

    def finish(self, rec: AssociationRecord, outcome: str) -> None:
        """Close the record (once) and hand it to ``on_association``."""
        with self._lock:
            if rec.ended_at:
                return
            rec.ended_at = time.time()
            rec.outcome = outcome
        log.info("association from %s (%s) %s: %d stored, %d failed%s", rec.calling_ae,
                 rec.peer, rec.outcome, rec.stored, rec.failed,
                 f" ({'; '.join(rec.reasons)})" if rec.reasons else "")
        if self.on_association is not None:
            try:
                self.on_association(rec)
            except Exception:  # the log must never take the listener down
                log.exception("cannot record the association log")
