"""What every route of the HTTP service shares, kept on ``app.state`` and handed to the
routes as a dependency, so that a route names what it reads and no route is a closure
over ``create_app``'s locals (which made the routes impossible to read or test apart).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from prometheus_client.registry import CollectorRegistry

from worker.settings import Settings
from worker.store.db import Database

QueueDepth = Callable[[str], int | None]
Retry = Callable[[int, int], None]


@dataclass(frozen=True)
class ApiState:
    """The service's inputs: set once by ``create_app``, read by every request.

    ``queue_depth(queue)`` is ``None`` where the broker cannot be asked (the API then
    reports the broker as not ready); ``retry(job_id, version)`` publishes a retried
    job's first message (``None``: the reconciler will find it).
    """

    settings: Settings
    db: Database
    token: str
    metrics: CollectorRegistry
    queue_depth: QueueDepth | None = None
    retry: Retry | None = None


async def api_state(request: Request) -> ApiState:
    """The state ``create_app`` stored on the app that serves this request."""
    state: ApiState = request.app.state.api
    return state


State = Annotated[ApiState, Depends(api_state)]
