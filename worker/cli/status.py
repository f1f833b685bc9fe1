"""``cxr-gateway status`` (the dashboard's summary in a terminal) and ``cxr-gateway
health`` (exit 0 when a process on this host beats: for container health checks; with
``--http`` also when the HTTP service answers, on whatever port the settings give it)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from worker.cli.common import add_reader, load, read_runtime

if TYPE_CHECKING:
    from worker.cli.common import Commands
    from worker.settings import Settings


def register(commands: Commands) -> None:
    status = add_reader(commands, "status", "the dashboard's summary in a terminal",
                        cmd_status)
    status.add_argument("--json", action="store_true", help="as JSON")
    health = add_reader(commands, "health", "exit 0 when a gateway or worker process on this "
                        "host is alive (for container health checks)", cmd_health)
    health.add_argument("--http", action="store_true",
                        help="also the HTTP service answers /healthz on CXR_API_PORT (the "
                             "gateway's image checks this, wherever its port was moved)")


def cmd_status(args: argparse.Namespace) -> int:
    from worker.ops.overview import overview
    from worker.pipeline.celery_app import configure_celery, queue_depth

    rt = read_runtime(args)
    configure_celery(rt.settings)
    summary = overview(rt.db, queue_depth, rt.settings.liveness_timeout_seconds)
    print(json.dumps(summary, indent=2) if args.json else render_status(summary))
    return 0


def _known(value: int | None) -> str:
    return str(value) if value is not None else "?"


def _seconds(value: float | None) -> str:
    return f"{value:.2f}" if value is not None else "-"


def render_status(summary: dict[str, Any]) -> str:
    """``status`` for people: the same numbers as the dashboard, one line each."""
    states = "  ".join(f"{k} {v}" for k, v in sorted(summary["jobs_by_state"].items()))
    admissions = "  ".join(f"{k} {v}"
                           for k, v in sorted(summary["instances_by_admission"].items()))
    depth = summary["queue_depth"]
    hour = summary["throughput"]
    lines = [f"CXR Reason Gateway at {summary['at']}  (research use only)",
             f"  jobs        {states or 'none'}",
             f"  instances   {admissions or 'none'}",
             f"  queues      cpu {_known(depth['cpu'])}  gpu {_known(depth['gpu'])}",
             f"  last hour   {hour['jobs_done']} job(s) done, {hour['instances_received']} "
             "instance(s) received"]
    for state, stage in summary["stages"].items():
        lines.append(f"  {state:<11} p50 {_seconds(stage['p50_s']):>8} s  "
                     f"p95 {_seconds(stage['p95_s']):>8} s  ({stage['count']})")
    alive = [w["name"] for w in summary["workers"] if w["alive"]]
    lines.append(f"  processes   {', '.join(alive) or 'none alive'}")
    lines += [f"  failed      job {f['job_id']}: {f['reason']}"
              for f in summary["failures"][:5]]
    lines += [f"  skipped     {s['study_instance_uid']}: {s['outcome']}"
              for s in summary["skipped_studies"][:5]]
    return "\n".join(lines)


def cmd_health(args: argparse.Namespace) -> int:
    """Healthy when a gateway or worker process on this host beat within the liveness
    timeout: what a container orchestrator needs to restart a hung one."""
    import socket

    from sqlalchemy import select

    from worker.store.db import Database, WorkerProcess, now

    settings = load(args)
    host = socket.gethostname()
    try:
        with Database(settings.effective_database_url).session() as s:
            beats = s.scalars(select(WorkerProcess.last_beat).where(
                WorkerProcess.host == host, WorkerProcess.stopped_at.is_(None))).all()
    except Exception as exc:  # noqa: BLE001 - unhealthy, with the reason
        print(f"unhealthy: the database cannot be read ({type(exc).__name__})",
              file=sys.stderr)
        return 1
    last = max(beats, default=None)
    if last is None or last < now() - settings.liveness_timeout_seconds:
        print(f"unhealthy: no process on {host} beat in the last "
              f"{settings.liveness_timeout_seconds:.0f} s", file=sys.stderr)
        return 1
    if args.http and (problem := _http_problem(settings)):
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    print(f"healthy: a process on {host} beat {now() - last:.1f} s ago"
          + (f"; /healthz answers on port {settings.api_port}" if args.http else ""))
    return 0


def _http_problem(settings: Settings) -> str:
    """Why the HTTP service on this host does not answer /healthz ("" when it does)."""
    import urllib.error
    import urllib.request

    host = settings.api_host if settings.api_host not in ("0.0.0.0", "::", "") else "127.0.0.1"
    url = f"http://{host}:{settings.api_port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=3) as answer:
            return "" if answer.status == 200 else f"{url} answered {answer.status}"
    except (OSError, urllib.error.URLError) as exc:
        return f"{url}: {exc}"
