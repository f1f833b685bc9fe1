"""The HTTP service (FastAPI): health, readiness, Prometheus metrics, a JSON API and the
dashboard.  It runs inside ``serve`` and standalone as ``cxr-gateway api``.

One router per audience, each guarded where it is declared:

| module | routes | guard |
| --- | --- | --- |
| ``health`` | ``/healthz``, ``/readyz``, ``/metrics`` | none (probes, Prometheus) |
| ``records`` | ``/api/...``, ``/openapi.json`` | ``require_token``: 401; ``permit``: 403 |
| ``dashboard`` | ``/``, ``/login``, ``/logout``, its script | ``require_login``: redirect |
| ``reviews`` | verdicts, agreement | ``require_token``: 401; ``permit``: 403 |
| ``batches`` | ``/api/batches`` | ``require_token``: 401 |
| ``auth`` | ``/api/me`` (who the token names, ``worker.store.callers``) | ``require_token``: 401 |
| ``questions`` | ``/api/jobs/{id}/questions``, ``/api/questions/...`` | the same |
| ``tokens`` | ``/api/tokens`` | ``require_token``, then ``permit``: 403 |
| ``readers`` | ``/read/NAME``, ``/api/readers/...`` (reader studies) | login; a listed reader |

``blinding`` holds a reader back from the model's output on a case they have yet to read
(403 on every job, question and list route that shows it).

Every guard is in ``auth`` (who is calling, sessions, CSRF, ``permit``: the 403 that
names a missing permission); what each role may do is ``worker.store.roles``'s.

``limits`` bounds what a stranger costs before any of them runs (body size and arrival
time in a middleware; head size and time and connections per address in the server's
protocol).  ``create_app`` only assembles them; what they share (settings, database, token,
metrics registry, the broker's queue depth, its publishers) is one ``ApiState`` on
``app.state``, handed to routes by the ``State`` dependency.  ``state`` and ``auth``
hold that plumbing; ``server`` runs the app in ``serve``'s process.  The package imports
``worker.store``, ``worker.settings``, ``worker.ops`` and ``worker.pipeline.followups``
(where a question is asked) only: the broker is reached through the ``Broker`` it is
given (``None``: no broker), so the service loads no Celery of its own.
"""

from __future__ import annotations

from fastapi import FastAPI

from worker.ops.api import auth, batches, dashboard, health, readers, records, tokens
from worker.ops.api import questions as question_routes
from worker.ops.api import reviews as review_routes
from worker.ops.api.auth import COOKIE, TOKEN_FILE, LoginNeeded, api_token
from worker.ops.api.limits import BodyLimit, HttpLimits
from worker.ops.api.server import APIServer
from worker.ops.api.state import ApiState, Broker, QueueDepth
from worker.ops.api.throttle import FailedLogins
from worker.ops.metrics import GatewayCollector, registry
from worker.settings import Settings
from worker.store.db import Database

__all__ = ["COOKIE", "TOKEN_FILE", "APIServer", "Broker", "api_token", "create_app"]


def create_app(settings: Settings, db: Database, queue_depth: QueueDepth | None = None,
               broker: Broker | None = None) -> FastAPI:
    """The app; ``broker``: how it publishes (a retried job, a question, an addendum)."""
    collector = GatewayCollector(db, settings.spool_dir, queue_depth,
                                 settings.liveness_timeout_seconds)
    app = FastAPI(title="CXR Reason Gateway", version="1", openapi_url=None, docs_url=None,
                  redoc_url=None,
                  description="Jobs, studies, associations and the dashboard of a research "
                              "gateway. Research use only; no patient data is served.")
    app.state.api = ApiState(settings=settings, db=db, token=api_token(settings),
                             metrics=registry(collector), queue_depth=queue_depth,
                             broker=broker, logins=FailedLogins(settings.api_login_failures))
    app.include_router(health.router)
    app.include_router(records.router)
    app.include_router(dashboard.router)
    app.include_router(question_routes.router)  # issue 25: follow-up questions
    app.include_router(review_routes.router)  # issue 25: verdicts
    app.include_router(batches.router)
    app.include_router(auth.router)  # /api/me
    app.include_router(tokens.router)  # issue 31: operators manage tokens
    app.include_router(readers.router)  # issue 34: reader studies
    app.include_router(readers.page_router)
    app.add_exception_handler(LoginNeeded, dashboard.to_login)
    # under every route: a body's size and arrival time, before FastAPI reads it (issue 31)
    app.add_middleware(BodyLimit, limits=HttpLimits.of(settings))
    return app
