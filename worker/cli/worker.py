"""``cxr-gateway worker``: a Celery worker process for the cpu and/or gpu queue.

Solo pool, one job (or GPU batch) at a time.  On the gpu queue the model is loaded before
the first message is taken, once per process; run one such process per GPU:
``--per-device`` starts and supervises one per visible device
(``worker/pipeline/gpu_devices.py``), or start each with ``CXR_DEVICE=cuda:N``.  Its name
is unique per process (``worker-<pid>@host``) unless ``--hostname`` gives one (``%h`` is
the host name, ``%p`` the pid).  SIGTERM ends it within ``CXR_SHUTDOWN_GRACE_SECONDS``,
even mid-batch: its jobs are taken over by the reconciler.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from typing import TYPE_CHECKING, Any, NoReturn

from worker.cli.common import add_data_dir, exit_now, load, require_schema, warn_unknown
from worker.cli.errors import CommandError, start_step
from worker.settings import Settings

if TYPE_CHECKING:
    from worker.cli.common import Commands
    from worker.runtime import Runtime
    from worker.store.liveness import Liveness


def register(commands: Commands) -> None:
    parser = commands.add_parser("worker", help="a Celery worker for the cpu and/or gpu "
                                 "queue (needs CXR_BROKER_URL)")
    add_data_dir(parser)
    parser.add_argument("--queues", default="cpu,gpu", help="comma list: cpu, gpu")
    parser.add_argument("--hostname", help="this worker's name, e.g. gpu1@%%h (%%h: the "
                        "host, %%p: the pid); default worker-<pid>@<host>, unique per process")
    parser.add_argument("--backend", help="model backend (CXR_MODEL_BACKEND)")
    parser.add_argument("--per-device", action="store_true",
                        help="one worker process per visible GPU, each pinned to its own "
                             "(CUDA_VISIBLE_DEVICES), restarted if it dies; names "
                             "<hostname>-gpuN-<pid>")
    parser.set_defaults(func=cmd_worker)


def cmd_worker(args: argparse.Namespace) -> int:
    settings = load(args)
    warn_unknown()
    if settings.embedded_broker:
        raise CommandError("a separate worker needs a shared broker: set CXR_BROKER_URL "
                           "(e.g. redis://host:6379/0); the embedded default runs its worker "
                           "inside serve")
    if args.per_device:
        return per_device(args, settings)
    queues = [q.strip() for q in args.queues.split(",") if q.strip()]
    rt, liveness = start_step(settings, lambda: register_process(settings, args.hostname,
                                                                 queues))
    consume(settings, rt, liveness, queues, verbose=args.verbose)


def register_process(settings: Settings, hostname: str | None,
                     queues: list[str]) -> tuple[Runtime, Liveness]:
    """This process's runtime and heartbeat; the schema must exist already (serve makes
    it), and a worker on a fresh database says so instead of failing on a missing table."""
    from celery.utils.nodenames import default_nodename, host_format

    from worker.runtime import configure
    from worker.store.liveness import Liveness

    require_schema(settings)
    rt = configure(settings, migrate=False, kind="worker")
    if hostname:
        rt.worker_name = host_format(default_nodename(hostname), p=str(os.getpid()))
    liveness = Liveness(rt.db, rt.worker_name, "worker", ",".join(queues),
                        settings.heartbeat_seconds)
    liveness.start()
    return rt, liveness


def consume(settings: Settings, rt: Runtime, liveness: Liveness, queues: list[str],
            verbose: bool) -> NoReturn:
    """Take messages until Celery stops; then leave at once (see ``exit_now``)."""
    from celery.signals import worker_shutting_down

    from worker.pipeline import tasks  # noqa: F401 - registers the tasks
    from worker.pipeline.celery_app import configure_celery

    def on_shutdown(**_kw: Any) -> None:
        liveness.stop()
        watchdog = threading.Timer(settings.shutdown_grace_seconds, exit_now)
        watchdog.daemon = True
        watchdog.start()

    worker_shutting_down.connect(on_shutdown, weak=False)
    if "gpu" in queues:
        backend = rt.backend  # load now, before consuming
        print(f"model backend {backend.info.name} ({backend.info.model_id}@"
              f"{backend.info.model_revision}) ready", flush=True)
    app = configure_celery(settings)
    celery_worker = app.Worker(queues=queues, pool="solo", concurrency=1,
                               hostname=rt.worker_name,
                               loglevel="INFO" if verbose else "WARNING",
                               without_gossip=True, without_mingle=True)
    print(f"worker {rt.worker_name} consuming {','.join(queues)}", flush=True)
    celery_worker.start()
    from worker.pipeline import inflight

    inflight.drain(rt, settings.shutdown_grace_seconds)  # what the engine holds finishes
    liveness.stop()
    exit_now(int(celery_worker.exitcode or 0))


def per_device(args: argparse.Namespace, settings: Settings) -> int:
    """``worker --per-device``: one child ``worker`` per visible GPU, supervised."""
    from worker.pipeline.gpu_devices import (
        DeviceError,
        DeviceSupervisor,
        check_device_setting,
        child_hostname,
        visible_devices,
    )

    try:
        check_device_setting(settings.device)
        devices = visible_devices(os.environ)
    except DeviceError as exc:
        raise CommandError(str(exc)) from None
    if not devices:
        raise CommandError("--per-device found no GPU (CUDA_VISIBLE_DEVICES, "
                           "NVIDIA_VISIBLE_DEVICES, nvidia-smi -L, torch); give the container "
                           "its GPUs or run without --per-device")
    common = child_command(args)
    supervisor = DeviceSupervisor(
        devices, lambda i: [*common, "--hostname", child_hostname(args.hostname, i)],
        os.environ, grace=settings.shutdown_grace_seconds + 5)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: supervisor.request_stop())
    print(f"{len(devices)} GPU worker(s), one per device: {', '.join(devices)}", flush=True)
    supervisor.start()
    return supervisor.run()


def child_command(args: argparse.Namespace) -> list[str]:
    """The ``worker`` command line of one per-device child: this one's options, no
    ``--per-device``, no ``--hostname`` (each child gets its own)."""
    return [sys.executable, "-m", "worker.cli",
            *(["--config", args.config] if args.config else []),
            *(["-v"] if args.verbose else []), "worker", "--queues", args.queues,
            *(["--data-dir", args.data_dir] if args.data_dir else []),
            *(["--backend", args.backend] if args.backend else [])]
