"""The HTTP service (FastAPI): health, readiness, Prometheus metrics, a JSON API and the
dashboard.  It runs inside ``serve`` and standalone as ``cxr-gateway api``.

Everything but ``/healthz``, ``/readyz`` and ``/metrics`` needs the token: an
``Authorization: Bearer`` header, or the cookie that ``/login`` sets for the dashboard.
Answers carry UIDs, states and reasons, never patient data.
"""

from __future__ import annotations

import hmac
import json
import secrets
import shutil
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import select, text

from worker.ops import overview
from worker.ops.metrics import GatewayCollector, registry
from worker.settings import Settings
from worker.store import jobs
from worker.store.db import Database, Job, WorkerProcess, now

COOKIE = "cxr_token"
STATIC = Path(__file__).parent / "static"
TOKEN_FILE = "api-token"


def api_token(settings: Settings) -> str:
    """The configured token, or the one generated into the data dir on first use (0600)."""
    if settings.api_token:
        return settings.api_token
    path = settings.data_dir / TOKEN_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(24) + "\n")
        path.chmod(0o600)
    return path.read_text().strip()


def _time(value: str | None) -> float | None:
    """An ISO 8601 time (or date) from a query, as epoch seconds."""
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise HTTPException(422, "since/until: not an ISO 8601 time") from None


def create_app(settings: Settings, db: Database,
               queue_depth: Callable[[str], int | None] | None = None,
               retry: Callable[[int, int], None] | None = None) -> FastAPI:
    """The app; ``retry(job_id, version)`` publishes a retried job's first message."""
    token = api_token(settings)
    collector = GatewayCollector(db, settings.spool_dir, queue_depth,
                                 settings.liveness_timeout_seconds)
    metrics_registry = registry(collector)
    app = FastAPI(title="CXR Reason Gateway", version="1", openapi_url=None, docs_url=None,
                  redoc_url=None,
                  description="Jobs, studies, associations and the dashboard of a research "
                              "gateway. Research use only; no patient data is served.")

    def authorised(request: Request) -> None:
        header = request.headers.get("authorization", "")
        given = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") \
            else request.cookies.get(COOKIE, "")
        if not given or not hmac.compare_digest(given, token):
            raise HTTPException(401, "a token is needed (Authorization: Bearer ..., or log "
                                     "in at /login)", headers={"WWW-Authenticate": "Bearer"})

    auth = [Depends(authorised)]

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        """The process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    def readyz() -> JSONResponse:
        """Database, broker, spool disk and a GPU worker's heartbeat, each with its state."""
        checks: dict[str, dict[str, Any]] = {}
        try:
            with db.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            checks["database"] = {"ok": True}
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            checks["database"] = {"ok": False, "error": type(exc).__name__}
        depth = queue_depth("cpu") if queue_depth else None
        checks["broker"] = {"ok": depth is not None, "cpu_queue_depth": depth}
        free = shutil.disk_usage(settings.spool_dir).free
        checks["spool_disk"] = {"ok": free >= settings.min_free_mb * 2**20,
                                "free_bytes": free}
        try:
            with db.session() as s:
                beats = s.scalars(select(WorkerProcess.last_beat).where(
                    WorkerProcess.queues.like("%gpu%"),
                    WorkerProcess.stopped_at.is_(None))).all()
            last = max(beats, default=None)
            checks["gpu_worker"] = {
                "ok": last is not None and last >= now() - settings.liveness_timeout_seconds,
                "last_heartbeat": jobs.iso(last)}
        except Exception as exc:  # noqa: BLE001
            checks["gpu_worker"] = {"ok": False, "error": type(exc).__name__}
        ready = all(c["ok"] for c in checks.values())
        return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready
                            else 503)

    @app.get("/metrics", tags=["health"])
    def metrics() -> Response:
        """Prometheus text format."""
        return Response(generate_latest(metrics_registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/openapi.json", dependencies=auth, include_in_schema=False)
    def openapi() -> dict[str, Any]:
        return app.openapi()

    @app.get("/api/overview", dependencies=auth, tags=["dashboard"])
    def get_overview() -> dict[str, Any]:
        """Counts by state, queue depth, throughput, p50/p95 per stage, recent jobs,
        failures, skipped studies and workers."""
        return overview.overview(db, queue_depth, settings.liveness_timeout_seconds)

    @app.get("/api/jobs", dependencies=auth, tags=["jobs"])
    def get_jobs(state: Annotated[str | None, Query(description="job state")] = None,
                 since: Annotated[str | None, Query(description="created at or after "
                                                    "(ISO 8601)")] = None,
                 until: Annotated[str | None, Query(description="created before")] = None,
                 calling_ae: Annotated[str | None, Query(description="sender's AE")] = None,
                 limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                 offset: Annotated[int, Query(ge=0)] = 0) -> list[dict[str, Any]]:
        """Jobs, newest first."""
        with db.session() as s:
            return overview.list_jobs(s, state, _time(since), _time(until), calling_ae,
                                      limit, offset)

    def _job(s: Any, job_id: int) -> Job:
        job = s.get(Job, job_id)
        if job is None:
            raise HTTPException(404, f"no job {job_id}")
        return job

    @app.get("/api/jobs/{job_id}", dependencies=auth, tags=["jobs"])
    def get_job(job_id: int) -> dict[str, Any]:
        """One job: result, deliveries and its timeline."""
        with db.session() as s:
            summary = jobs.job_summary(s, _job(s, job_id))
            result = _job(s, job_id).result
        r = json.loads(result) if result else {}
        summary["reasoning"] = r.get("reasoning", "")
        summary["answer"] = r.get("answer")
        summary["report_text"] = r.get("report_text", "")
        summary["report_sections"] = r.get("report_sections", [])
        return summary

    @app.get("/api/jobs/{job_id}/preview.png", dependencies=auth, tags=["jobs"])
    def get_preview(job_id: int) -> Response:
        """The image the model was given."""
        with db.session() as s:
            png = _job(s, job_id).model_input
        if not png:
            raise HTTPException(404, f"job {job_id} has no model input yet")
        return Response(png, media_type="image/png")

    @app.post("/api/jobs/{job_id}/retry", dependencies=auth, tags=["jobs"])
    def retry_job(job_id: int) -> dict[str, Any]:
        """Put a failed job back in the queue."""
        with db.session() as s:
            _job(s, job_id)
            job = jobs.retry_failed(s, job_id)
        if job is None:
            raise HTTPException(409, f"job {job_id} is not failed")
        if retry is not None:
            retry(job.id, job.version)
        return {"job_id": job_id, "state": job.state}

    @app.get("/api/studies", dependencies=auth, tags=["studies"])
    def get_studies(outcome: Annotated[str | None, Query(
                        pattern="^(admitted|skipped|open)$")] = None,
                    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                    offset: Annotated[int, Query(ge=0)] = 0) -> list[dict[str, Any]]:
        """Studies, newest first."""
        with db.session() as s:
            return overview.list_studies(s, outcome, limit, offset)

    @app.get("/api/studies/{study_uid}", dependencies=auth, tags=["studies"])
    def get_study(study_uid: str) -> dict[str, Any]:
        """A study: every instance and why it was or was not admitted, and its jobs."""
        with db.session() as s:
            detail = overview.study_detail(s, study_uid)
        if detail is None:
            raise HTTPException(404, f"no study {study_uid}")
        return detail

    @app.get("/api/associations", dependencies=auth, tags=["associations"])
    def get_associations(limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                         since: Annotated[str | None, Query()] = None
                         ) -> list[dict[str, Any]]:
        """The association log, newest first."""
        with db.session() as s:
            return overview.list_associations(s, limit, _time(since))

    @app.get("/login", include_in_schema=False)
    def login_form(token_given: Annotated[str | None, Query(alias="token")] = None
                   ) -> Response:
        if token_given is not None:
            return _login(token_given)
        return HTMLResponse((STATIC / "login.html").read_text())

    @app.post("/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        form = (await request.body()).decode()
        given = dict(p.split("=", 1) for p in form.split("&") if "=" in p).get("token", "")
        from urllib.parse import unquote_plus

        return _login(unquote_plus(given))

    def _login(given: str) -> Response:
        if not hmac.compare_digest(given.strip(), token):
            return HTMLResponse((STATIC / "login.html").read_text().replace(
                "<!--error-->", "<p class=error>That is not the token.</p>"), status_code=401)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict")
        return response

    @app.get("/", include_in_schema=False)
    def dashboard(request: Request) -> Response:
        try:
            authorised(request)
        except HTTPException:
            return RedirectResponse("/login", status_code=303)
        return HTMLResponse((STATIC / "dashboard.html").read_text())

    return app


class APIServer:
    """uvicorn in a thread, for ``serve``; stops with it."""

    def __init__(self, app: FastAPI, host: str, port: int) -> None:
        import uvicorn

        self.config = uvicorn.Config(app, host=host, port=port, log_level="warning",
                                     access_log=False, lifespan="off")
        self.server = uvicorn.Server(self.config)  # in a thread it leaves signals alone
        self._thread: Any = None

    def start(self, timeout: float = 10.0) -> None:
        import socket
        import threading
        import time

        with socket.socket() as probe:  # a taken port: our one line, not uvicorn's log
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((self.config.host, self.config.port))
            except OSError as exc:
                raise OSError(exc.errno, f"the HTTP service cannot listen on "
                                         f"{self.config.host}:{self.config.port}: "
                                         f"{exc.strerror}") from exc

        self._thread = threading.Thread(target=self.server.run, name="api", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise OSError(f"the HTTP service could not listen on {self.config.host}:"
                              f"{self.config.port} (in use?)")
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
