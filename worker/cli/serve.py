"""``cxr-gateway serve``: the gateway process (listener, assembler, reconciler, HTTP
service and an in-process worker) until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import TYPE_CHECKING

from worker import logs
from worker.cli.common import (
    add_data_dir,
    config_file,
    exit_now,
    load,
    refuse_short_token,
    stop_within,
    warn_unknown,
)
from worker.cli.errors import StartupError, start_step
from worker.settings import Settings

if TYPE_CHECKING:
    from worker.cli.common import Commands


def register(commands: Commands) -> None:
    parser = commands.add_parser(
        "serve", help="the gateway: DICOM listener, assembler, reconciler, HTTP service and "
        "an in-process worker")
    add_data_dir(parser)
    parser.add_argument("--port", type=int, help="DICOM listener port (CXR_PORT)")
    parser.add_argument("--backend", help="model backend (CXR_MODEL_BACKEND)")
    parser.add_argument("--api-port", type=int, help="HTTP port (CXR_API_PORT; 0 = off)")
    parser.add_argument("--no-worker", action="store_true", help="no in-process worker at all")
    parser.add_argument("--worker-queues", default="cpu,gpu",
                        help="queues of the in-process worker (default cpu,gpu; 'cpu' on a "
                             "gateway node with GPU workers elsewhere)")
    parser.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    """Start everything, say so in one line, and run until told to stop.  Stopping never
    waits long: what is in flight is left to the reconciler."""
    from worker.service import ServeProcess

    settings = load(args)
    warn_unknown()
    refuse_short_token(settings)
    queues = () if args.no_worker else tuple(
        q.strip() for q in args.worker_queues.split(",") if q.strip())
    gateway = ServeProcess(settings, worker_queues=queues, config_file=config_file(args))
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    signal.signal(signal.SIGHUP, lambda *_: gateway.routing.request_reload())
    try:
        start_step(settings, gateway.start)
    except StartupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if gateway.liveness is not None:  # nothing was acknowledged: just say we are gone
            gateway.liveness.stop()
        exit_now(2)  # threads the failed start left behind must not keep us alive
    print(serving_line(settings, gateway.port), flush=True)
    # Waited on in steps: a handler runs only in the main thread, and only once it is back
    # in the interpreter. If the kernel hands SIGTERM to another of our threads, a wait
    # with no timeout is never interrupted, and serve would ignore the signal for good.
    while not stop.wait(0.5):
        pass
    stop_within(gateway.stop, settings.shutdown_grace_seconds, "serve")
    exit_now(0)


def serving_line(settings: Settings, port: int) -> str:
    """What a person (and tests/peers.py's Serve) waits for: the gateway serves."""
    dashboard = ""
    if settings.api_port:
        token = "CXR_API_TOKEN" if settings.api_token else settings.data_dir / "api-token"
        dashboard = (f"; dashboard http://{settings.api_host}:{settings.api_port}/ "
                     f"(token: {token})")
    return (f"cxr-gateway serving {settings.ae_title} on {settings.host}:{port} "
            f"(data {settings.data_dir}, broker {logs.mask_url(settings.broker_url)}, "
            f"backend {settings.model_backend}){dashboard}")
