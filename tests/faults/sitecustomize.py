"""Faults for a real ``serve`` (issue 31), loaded by Python at start-up when a test puts
this folder on ``PYTHONPATH``: a follow-up question whose text holds a marker fails the
way a real worker can, after its claim.  ``[oom]``: CUDA out of memory (RuntimeError);
``[index]``: hf-space's unguarded ``paths[0]`` (IndexError); ``[integrity]``: the
database refuses the answer's turns (IntegrityError).  Nothing else changes."""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import IntegrityError

import models.mock
import worker.pipeline.followups as followups

_generate = models.mock.MockBackend.generate
_append_reply = followups.conv.append_reply


def _generate_or_fail(self: Any, requests: Any) -> Any:
    for req in requests:
        text = req.turns[-1].text
        if "[oom]" in text:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        if "[index]" in text:
            raise IndexError("list index out of range")
    return _generate(self, requests)


def _append_or_refuse(session: Any, job: Any, q: Any, *args: Any, **kwargs: Any) -> Any:
    if "[integrity]" in q.text:
        raise IntegrityError("INSERT INTO conversation_turns", {}, Exception("duplicate"))
    return _append_reply(session, job, q, *args, **kwargs)


models.mock.MockBackend.generate = _generate_or_fail  # type: ignore[method-assign]
followups.conv.append_reply = _append_or_refuse
