"""Batch runs' progress for the dashboard and scripts (``/api/batches``), behind the token
like the rest of ``/api``; the figures are ``worker.store.progress``'.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from worker.ops.api.auth import require_token
from worker.ops.api.state import State
from worker.store import progress

router = APIRouter(dependencies=[Depends(require_token)])


@router.get("/api/batches", tags=["batches"])
def get_batches(state: State, limit: Annotated[int, Query(ge=1, le=200)] = 20
                ) -> list[dict[str, Any]]:
    """The newest batch runs: progress, rate over their processing time, ETA."""
    with state.db.session() as session:
        return progress.runs(session, limit)
