"""``cxr-gateway``: serve, demo, run, jobs, settings."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from sqlalchemy import select, update

from worker.run_command import add_arguments as add_run_arguments
from worker.run_command import cmd_run
from worker.settings import Settings, SettingsError, load_settings, settings_table


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    if getattr(args, "data_dir", None):
        overrides["data_dir"] = Path(args.data_dir)
    if getattr(args, "port", None) is not None:
        overrides["port"] = args.port
    if getattr(args, "backend", None):
        overrides["model_backend"] = args.backend
    return load_settings(Path(args.config) if args.config else None, None, **overrides)


def exit_now(code: int = 0) -> None:
    """Leave without waiting for library threads (broker connections, association
    threads): everything acknowledged is already on disk and in the database, and what is
    in flight is taken over by the reconciler."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def stop_within(stop: Any, grace: float, what: str) -> None:
    """Run ``stop`` for at most ``grace`` seconds."""
    t = threading.Thread(target=stop, name="shutdown", daemon=True)
    t.start()
    t.join(grace)
    if t.is_alive():
        logging.getLogger("worker.cli").warning(
            "%s did not stop within %.1f s; exiting anyway (in-flight work is taken over)",
            what, grace)


def cmd_serve(args: argparse.Namespace) -> int:
    from worker.service import Gateway

    settings = _settings(args)
    queues = () if args.no_worker else tuple(
        q.strip() for q in args.worker_queues.split(",") if q.strip())
    gw = Gateway(settings, worker_queues=queues)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    gw.start()
    print(f"cxr-gateway serving {settings.ae_title} on {settings.host}:{gw.port} "
          f"(data {settings.data_dir}, broker {settings.broker_url}, "
          f"backend {settings.model_backend})", flush=True)
    stop.wait()
    stop_within(gw.stop, settings.shutdown_grace_seconds, "serve")
    exit_now(0)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    """A Celery worker process: solo pool, one job (or GPU batch) at a time.

    On the gpu queue the model is loaded before the first message is taken, once per
    process; run one such process per GPU (``CXR_DEVICE=cuda:N``).  Its name is unique
    per process (``worker-<pid>@host``) unless ``--hostname`` gives one (``%h`` is the
    host name).  SIGTERM ends it within ``CXR_SHUTDOWN_GRACE_SECONDS``, even mid-batch:
    its jobs are taken over by the reconciler.
    """
    from celery.signals import worker_shutting_down
    from celery.utils.nodenames import default_nodename, host_format

    from worker import tasks  # noqa: F401 - registers the tasks
    from worker.celery_app import configure_celery
    from worker.liveness import Liveness
    from worker.runtime import configure

    settings = _settings(args)
    if settings.embedded_broker:
        print("error: a separate worker needs a shared broker (set CXR_BROKER_URL, e.g. "
              "redis://...); the embedded default runs its worker inside serve",
              file=sys.stderr)
        return 2
    queues = [q.strip() for q in args.queues.split(",") if q.strip()]
    rt = configure(settings, migrate=False, kind="worker")
    if args.hostname:
        rt.worker_name = host_format(default_nodename(args.hostname))
    liveness = Liveness(rt.db, rt.worker_name, "worker", ",".join(queues),
                        settings.heartbeat_seconds)
    liveness.start()

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
    worker = app.Worker(queues=queues, pool="solo", concurrency=1, hostname=rt.worker_name,
                        loglevel="INFO" if args.verbose else "WARNING", without_gossip=True,
                        without_mingle=True)
    print(f"worker {rt.worker_name} consuming {','.join(queues)}", flush=True)
    worker.start()
    liveness.stop()
    exit_now(int(worker.exitcode or 0))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from worker.demo import run_demo

    settings = _settings(args)
    return run_demo(settings, Path(args.data_dir) if args.data_dir else None, args.timeout)


def cmd_jobs(args: argparse.Namespace) -> int:
    from worker import jobs
    from worker.db import Job
    from worker.runtime import configure

    rt = configure(_settings(args))
    if args.action == "retry":
        return _retry(rt, args)
    with rt.db.session() as s:
        if args.action == "list":
            for job in s.scalars(select(Job).order_by(Job.id)).all():
                print(f"{job.id:6d}  v{job.version}  {job.state:<10}  {job.study_instance_uid}"
                      + (f"  {job.reason}" if job.reason else ""))
            return 0
        job_row = s.get(Job, args.job_id) if args.job_id is not None else None
        if job_row is None:
            print(f"error: no job {args.job_id}", file=sys.stderr)
            return 2
        print(json.dumps(jobs.job_summary(s, job_row), indent=2))
    return 0


def _retry(rt: Any, args: argparse.Namespace) -> int:
    """Put one failed job (or all failed jobs) back in the queue."""
    from worker import jobs, tasks
    from worker.celery_app import configure_celery
    from worker.db import Job

    configure_celery(rt.settings)
    with rt.db.session() as s:
        if args.failed:
            targets = s.scalars(select(Job).where(Job.state == jobs.FAILED)).all()
        elif args.job_id is not None:
            job = s.get(Job, args.job_id)
            targets = [job] if job is not None else []
        else:
            print("error: give a job id or --failed", file=sys.stderr)
            return 2
        if not targets:
            print("error: nothing to retry", file=sys.stderr)
            return 2
        retried = 0
        for job in targets:
            if jobs.requeue(s, job.id, job.version, ("",), (jobs.FAILED,), jobs.QUEUED,
                            "retried by operator", count_attempt=False):
                s.execute(update(Job).where(Job.id == job.id)
                          .values(attempts=0, retries=0, reason="", last_error=""))
                s.commit()
                tasks.enqueue_prepare(job.id, job.version)
                retried += 1
    print(f"re-queued {retried} job(s)")
    return 0 if retried else 2


def cmd_settings(args: argparse.Namespace) -> int:
    print(settings_table())
    settings = _settings(args)
    db_file = settings.data_dir / "gateway.db"
    if settings.database_url or db_file.exists():
        from worker.db import Database

        seed = Database(settings.effective_database_url).installation_seed()
        print(f"\ninstallation identity (root of every SR UID): {seed}")
    else:
        print(f"\ninstallation identity: none yet ({db_file} is created by the first serve)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cxr-gateway", description=__doc__)
    p.add_argument("--config", help="TOML settings file (also CXR_CONFIG_FILE)")
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the DICOM listener, assembler and worker")
    serve.add_argument("--data-dir")
    serve.add_argument("--port", type=int)
    serve.add_argument("--backend")
    serve.add_argument("--no-worker", action="store_true",
                       help="no in-process worker at all")
    serve.add_argument("--worker-queues", default="cpu,gpu",
                       help="queues of the in-process worker (default cpu,gpu; 'cpu' on a "
                            "gateway node with GPU workers elsewhere)")
    serve.set_defaults(func=cmd_serve)

    wk = sub.add_parser("worker", help="a Celery worker for the cpu and/or gpu queue "
                        "(needs CXR_BROKER_URL)")
    wk.add_argument("--queues", default="cpu,gpu", help="comma list: cpu, gpu")
    wk.add_argument("--hostname", help="this worker's name, e.g. gpu1@%%h (%%h: the host); "
                    "default worker-<pid>@<host>, unique per process")
    wk.add_argument("--backend")
    wk.set_defaults(func=cmd_worker)

    demo = sub.add_parser("demo", help="send RG1 through the whole path and print the result")
    demo.add_argument("--data-dir", help="keep the demo's data here (default: a temp folder)")
    demo.add_argument("--backend")
    demo.add_argument("--timeout", type=float, default=120.0)
    demo.set_defaults(func=cmd_demo)

    jobs_p = sub.add_parser("jobs", help="inspect jobs")
    jobs_p.add_argument("action", choices=["list", "show", "retry"])
    jobs_p.add_argument("job_id", type=int, nargs="?")
    jobs_p.add_argument("--failed", action="store_true", help="retry: every failed job")
    jobs_p.add_argument("--data-dir")
    jobs_p.set_defaults(func=cmd_jobs)

    run_p = sub.add_parser("run", help="one image through the model; JSON on stdout "
                           "(the NV-Reason-CXR wrapper's flags)")
    add_run_arguments(run_p)
    run_p.set_defaults(func=cmd_run, quiet=True)

    st = sub.add_parser("settings", help="print the settings table and this installation's "
                        "identity")
    st.add_argument("--data-dir", help="the data folder whose database to read")
    st.set_defaults(func=cmd_settings)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet = getattr(args, "quiet", False) and not args.verbose
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING if quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("pynetdicom", "alembic", "celery", "kombu", "highdicom"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    try:
        return int(args.func(args))
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
