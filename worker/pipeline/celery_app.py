"""The Celery application: transport and distributed engine, not the source of truth.

Settings follow Celery's guidance for long jobs (acks_late, reject on worker lost,
prefetch 1, no result backend); the database's job leases make delivery at least
once, and idempotent tasks make that safe.

``app`` is module-level because Celery forces it: ``@app.task`` registers each task on an
app when ``worker.pipeline.tasks`` is imported, before any settings are known.  It is the
process's one Celery app, configured in one place, ``configure_celery``, at process start
(``serve``, ``worker``, the CLI commands that publish); nothing else changes it.
"""

from __future__ import annotations

import logging
import shutil
from typing import Any

from celery import Celery

from worker.pipeline.embedded_broker import TRANSPORT
from worker.settings import Settings

log = logging.getLogger(__name__)
app = Celery("cxr_gateway", include=["worker.pipeline.tasks"])  # see the module docstring

CPU_QUEUE = "cpu"
GPU_QUEUE = "gpu"
ROUTES = {
    "cxr.prepare": {"queue": CPU_QUEUE},
    "cxr.infer": {"queue": GPU_QUEUE},
    "cxr.report": {"queue": CPU_QUEUE},
}


def broker_config(settings: Settings) -> dict[str, Any]:
    if settings.embedded_broker:
        folder = settings.broker_dir / "queue"
        folder.mkdir(parents=True, exist_ok=True)
        (settings.broker_dir / "control").mkdir(parents=True, exist_ok=True)
        return {
            "broker_url": "filesystem://localhost//",
            "broker_transport": TRANSPORT,  # kombu's, with messages that appear whole
            "broker_transport_options": {
                "data_folder_in": str(folder),
                "data_folder_out": str(folder),
                "control_folder": str(settings.broker_dir / "control"),
                "polling_interval": min(settings.poll_seconds, 0.1),
            },
        }
    # Redis redelivers an unacknowledged message after the visibility timeout: keep it
    # above the longest stage; the database's liveness sweep recovers a dead worker's
    # jobs long before (the redelivered message then finds its job taken: a no-op).
    visibility = int(max(settings.stage_timeout_seconds + 600, 3600))
    return {
        "broker_url": settings.broker_url,
        "broker_transport_options": {
            "visibility_timeout": visibility,
            "queue_order_strategy": "priority",
            "priority_steps": list(range(10)),
        },
        "result_backend_transport_options": {"visibility_timeout": visibility},
    }


def configure_celery(settings: Settings) -> Celery:
    """Point the process's Celery app at this installation's broker, with the settings
    above; called once at process start (tests call it once per installation they make)."""
    app.conf.update(
        **broker_config(settings),
        task_routes=ROUTES,
        task_default_queue=CPU_QUEUE,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        result_backend=None,
        task_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_enable_remote_control=not settings.embedded_broker,
        # Celery events, so that Flower works unchanged (the embedded queue has no fanout)
        worker_send_task_events=not settings.embedded_broker,
        task_send_sent_event=not settings.embedded_broker,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        task_queue_max_priority=9,
        task_default_priority=0,
        broker_connection_max_retries=None,
    )
    return app


def queue_depth(queue: str) -> int | None:
    """Messages waiting in a queue (not those a worker holds), or None if unknown."""
    from kombu.exceptions import ChannelError

    try:
        with app.connection_for_read() as conn:
            ok = conn.default_channel.queue_declare(queue=queue, passive=True)
            return int(ok.message_count)
    except ChannelError:  # Redis: a queue with no key is simply empty
        return 0
    except Exception as exc:  # noqa: BLE001 - the broker may be down: say we do not know
        log.debug("queue depth of %s unknown: %s", queue, exc)
        return None


def purge_embedded_queue(settings: Settings) -> None:
    """The embedded queue belongs to this process alone; the database re-creates its work."""
    shutil.rmtree(settings.broker_dir / "queue", ignore_errors=True)
    (settings.broker_dir / "queue").mkdir(parents=True, exist_ok=True)
