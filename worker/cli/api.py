"""``cxr-gateway api``: the HTTP service alone (health, metrics, JSON API, dashboard), on
any node that reaches the gateway's database and broker."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from worker.cli.common import (
    add_data_dir,
    existing_runtime,
    load,
    refuse_short_token,
    warn_unknown,
)
from worker.cli.errors import start_step
from worker.settings import Settings

if TYPE_CHECKING:
    from worker.cli.common import Commands


def register(commands: Commands) -> None:
    parser = commands.add_parser("api", help="the HTTP service alone: health, metrics, JSON "
                                 "API, dashboard")
    add_data_dir(parser)
    parser.add_argument("--api-host", help="address (CXR_API_HOST)")
    parser.add_argument("--api-port", type=int, help="port (CXR_API_PORT)")
    parser.set_defaults(func=cmd_api)


def cmd_api(args: argparse.Namespace) -> int:
    import uvicorn

    from worker.ops.api.limits import HttpLimits

    settings = load(args)
    warn_unknown()
    refuse_short_token(settings)
    app = start_step(settings, lambda: build_app(settings))
    print(f"cxr-gateway api on http://{settings.api_host}:{settings.api_port}/", flush=True)
    uvicorn.run(app, host=settings.api_host, port=settings.api_port, log_level="warning",
                access_log=False, **HttpLimits.of(settings).uvicorn_options())
    return 0


def build_app(settings: Settings) -> Any:
    """The service on an existing gateway's database (it never creates one)."""
    from worker.ops.api import Broker, create_app
    from worker.pipeline import tasks
    from worker.pipeline.celery_app import configure_celery, queue_depth

    rt = existing_runtime(settings)
    configure_celery(settings)
    broker = Broker(tasks.enqueue_prepare, tasks.enqueue_question, tasks.enqueue_addendum)
    return create_app(settings, rt.db, queue_depth, broker)
