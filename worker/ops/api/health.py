"""The open routes: ``/healthz``, ``/readyz`` and ``/metrics``.

They need no token because load balancers, orchestrators and Prometheus call them as
they are; they say nothing a reader could not learn by counting (states, queue depth,
free disk), never a UID or patient data.
"""

from __future__ import annotations

import shutil
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import select, text

from worker.ops.api.state import ApiState, State
from worker.store import jobs
from worker.store.db import WorkerProcess, now

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process answers."""
    return {"status": "ok"}


@router.get("/readyz")
def readyz(state: State) -> JSONResponse:
    """Database, broker, spool disk and a GPU worker's heartbeat, each with its state."""
    checks: dict[str, dict[str, Any]] = {"database": _database(state)}
    depth = state.queue_depth("cpu") if state.queue_depth else None
    checks["broker"] = {"ok": depth is not None, "cpu_queue_depth": depth}
    free = shutil.disk_usage(state.settings.spool_dir).free
    checks["spool_disk"] = {"ok": free >= state.settings.min_free_mb * 2**20,
                            "free_bytes": free}
    checks["gpu_worker"] = _gpu_worker(state)
    ready = all(c["ok"] for c in checks.values())
    return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready
                        else 503)


@router.get("/metrics")
def metrics(state: State) -> Response:
    """Prometheus text format."""
    return Response(generate_latest(state.metrics), media_type=CONTENT_TYPE_LATEST)


def _database(state: ApiState) -> dict[str, Any]:
    """The database answers a query (the error's class only: its text may hold a URL)."""
    try:
        with state.db.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return {"ok": True}
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        return {"ok": False, "error": type(exc).__name__}


def _gpu_worker(state: ApiState) -> dict[str, Any]:
    """Some process taking the gpu queue beat within the liveness timeout."""
    try:
        with state.db.session() as session:
            beats = session.scalars(select(WorkerProcess.last_beat).where(
                WorkerProcess.queues.like("%gpu%"),
                WorkerProcess.stopped_at.is_(None))).all()
        last = max(beats, default=None)
        timeout = state.settings.liveness_timeout_seconds
        return {"ok": last is not None and last >= now() - timeout,
                "last_heartbeat": jobs.iso(last)}
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        return {"ok": False, "error": type(exc).__name__}
