"""What every route of the HTTP service shares, kept on ``app.state`` and handed to the
routes as a dependency, so that a route names what it reads and no route is a closure
over ``create_app``'s locals (which made the routes impossible to read or test apart).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, TypeVar

from fastapi import Depends, HTTPException, Request
from prometheus_client.registry import CollectorRegistry

from worker.ops.api.throttle import FailedLogins
from worker.settings import Settings
from worker.store.db import Database

T = TypeVar("T")
QueueDepth = Callable[[str], int | None]


@dataclass(frozen=True)
class Broker:
    """How the service puts a message on the gateway's broker, given by whoever builds the
    app (``serve``, ``cxr-gateway api``: ``worker.pipeline.tasks``' publishers); the
    service itself loads no Celery.  Each is best effort: what it announces is in the
    database already, and the reconciler or the next GPU message finds it."""

    retry: Callable[[int, int], None]  # a retried job's first message (job id, version)
    question: Callable[[int], None]  # wakes a GPU worker for a question
    addendum: Callable[[int], None]  # files and sends a question's addendum SR


@dataclass(frozen=True)
class ApiState:
    """The service's inputs: set once by ``create_app``, read by every request.

    ``queue_depth(queue)`` is ``None`` where the broker cannot be asked (the API then
    reports the broker as not ready); ``broker`` is ``None`` where there is none to
    publish to (a test's app: rows wait in the database); ``logins`` counts failed
    logins per client address (``throttle``).
    """

    settings: Settings
    db: Database
    token: str
    metrics: CollectorRegistry
    queue_depth: QueueDepth | None = None
    broker: Broker | None = None
    logins: FailedLogins = field(default_factory=lambda: FailedLogins(10))


async def api_state(request: Request) -> ApiState:
    """The state ``create_app`` stored on the app that serves this request."""
    state: ApiState = request.app.state.api
    return state


State = Annotated[ApiState, Depends(api_state)]


def found(value: T | None, what: str) -> T:
    """The value a route looked up, or the 404 that names what is missing ("job 3")."""
    if value is None:
        raise HTTPException(404, f"no {what}")
    return value
