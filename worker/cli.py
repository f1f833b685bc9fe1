"""``cxr-gateway``: the command line.

serve (the gateway), worker (a Celery worker), api (the HTTP service alone), demo, run
(one image, NVIDIA's wrapper contract), status, jobs, studies, settings.  A mistake ends
with one ``error:`` line that says what to change and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from sqlalchemy import select

from worker import logs
from worker.research.run_command import add_arguments as add_run_arguments
from worker.research.run_command import cmd_run
from worker.settings import (
    FIELDS,
    Settings,
    SettingsError,
    env_name,
    load_settings,
    shown_value,
    sources,
    unknown_variables,
)

log = logging.getLogger("worker.cli")


class StartupError(Exception):
    """A start-up mistake, already explained in one line."""


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for option, field in (("data_dir", "data_dir"), ("port", "port"), ("backend", "model_backend"),
                          ("api_port", "api_port"), ("api_host", "api_host")):
        value = getattr(args, option, None)
        if value is not None:
            out[field] = Path(value) if field == "data_dir" else value
    return out


def _config(args: argparse.Namespace) -> Path | None:
    return Path(args.config) if getattr(args, "config", None) else None


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(_config(args), None, **_overrides(args))


def _warn_unknown() -> None:
    for line in unknown_variables():
        print(f"warning: {line}", file=sys.stderr)


def explain(exc: BaseException, settings: Settings) -> str | None:
    """One line for a start-up failure a user can fix, or None for a real bug."""
    from sqlalchemy.exc import OperationalError as DBError

    from worker.logs import mask_url

    if isinstance(exc, DBError | ConnectionRefusedError) or type(exc).__name__ in (
            "OperationalError", "ArgumentError", "NoSuchModuleError"):
        first = str(getattr(exc, "orig", exc) or exc).strip().splitlines()[0][:200]
        return (f"cannot use the database {mask_url(settings.effective_database_url)}: "
                f"{first}; check CXR_DATABASE_URL (and that the server runs)")
    if isinstance(exc, PermissionError) or (isinstance(exc, OSError) and exc.errno in (
            errno.EROFS, errno.EACCES, errno.ENOSPC)):
        return (f"cannot write to the data folder {settings.data_dir}: "
                f"{exc.strerror or exc}; set CXR_DATA_DIR (or --data-dir) to a folder this "
                "user can write")
    from worker.ingest.processes import ListenerStartError

    if isinstance(exc, ListenerStartError):
        return f"{exc}; see the lines above, or set CXR_LISTENER_PROCESSES=1"
    if isinstance(exc, OSError) and (exc.errno == errno.EADDRINUSE or "in use" in str(exc)):
        if "HTTP" in str(exc):
            return (f"the HTTP port {settings.api_host}:{settings.api_port} is in use: stop "
                    "the other process or set CXR_API_PORT (or --api-port; 0 turns it off)")
        return (f"port {settings.port} on {settings.host} is in use: stop the other process "
                "or set CXR_PORT (or --port)")
    if isinstance(exc, OSError) and exc.errno == errno.EADDRNOTAVAIL:
        return f"cannot listen on {settings.host}: no such address here; check CXR_HOST"
    if type(exc).__name__ in ("OperationalError",) or "redis" in type(exc).__module__:
        return (f"cannot reach the broker {mask_url(settings.broker_url)}: {exc}; check "
                "CXR_BROKER_URL")
    return None


def _writable(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    probe = folder / ".write-test"
    probe.write_bytes(b"")
    probe.unlink()


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
        log.warning("%s did not stop within %.1f s; exiting anyway (in-flight work is "
                    "taken over)", what, grace)


def _started(settings: Settings, start: Any) -> None:
    """Run a start-up step, turning the mistakes a user can fix into StartupError."""
    try:
        _writable(settings.data_dir)
    except OSError as exc:
        raise StartupError(
            f"cannot write to the data folder {settings.data_dir}: {exc.strerror or exc}; "
            "set CXR_DATA_DIR (or --data-dir) to a folder this user can write") from exc
    try:
        start()
    except Exception as exc:
        message = explain(exc, settings)
        if message is None:
            raise
        raise StartupError(message) from exc


def cmd_serve(args: argparse.Namespace) -> int:
    from worker.service import Gateway

    settings = _settings(args)
    _warn_unknown()
    queues = () if args.no_worker else tuple(
        q.strip() for q in args.worker_queues.split(",") if q.strip())
    gw = Gateway(settings, worker_queues=queues)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        _started(settings, gw.start)
    except StartupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if gw.liveness is not None:  # nothing was acknowledged: just say we are gone
            gw.liveness.stop()
        exit_now(2)
    print(f"cxr-gateway serving {settings.ae_title} on {settings.host}:{gw.port} "
          f"(data {settings.data_dir}, broker {logs.mask_url(settings.broker_url)}, "
          f"backend {settings.model_backend})"
          + (f"; dashboard http://{settings.api_host}:{settings.api_port}/ (token: "
             f"{'CXR_API_TOKEN' if settings.api_token else settings.data_dir / 'api-token'})"
             if settings.api_port else ""), flush=True)
    stop.wait()
    stop_within(gw.stop, settings.shutdown_grace_seconds, "serve")
    exit_now(0)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    """A Celery worker process: solo pool, one job (or GPU batch) at a time.

    On the gpu queue the model is loaded before the first message is taken, once per
    process; run one such process per GPU: ``--per-device`` starts and supervises one per
    visible device (``worker/pipeline/gpu_devices.py``), or start each with ``CXR_DEVICE=cuda:N``.
    Its name is unique per process (``worker-<pid>@host``) unless ``--hostname`` gives one
    (``%h`` is the host name, ``%p`` the pid).  SIGTERM ends it within
    ``CXR_SHUTDOWN_GRACE_SECONDS``, even mid-batch: its jobs are taken over by the
    reconciler.
    """
    from celery.signals import worker_shutting_down
    from celery.utils.nodenames import default_nodename, host_format

    from worker.pipeline import tasks  # noqa: F401 - registers the tasks
    from worker.pipeline.celery_app import configure_celery
    from worker.runtime import configure
    from worker.store.liveness import Liveness

    settings = _settings(args)
    _warn_unknown()
    if settings.embedded_broker:
        print("error: a separate worker needs a shared broker: set CXR_BROKER_URL (e.g. "
              "redis://host:6379/0); the embedded default runs its worker inside serve",
              file=sys.stderr)
        return 2
    if args.per_device:
        return _per_device(args, settings)
    queues = [q.strip() for q in args.queues.split(",") if q.strip()]
    holder: dict[str, Any] = {}

    def start() -> None:
        rt = configure(settings, migrate=False, kind="worker")
        if args.hostname:
            rt.worker_name = host_format(default_nodename(args.hostname), p=str(os.getpid()))
        liveness = Liveness(rt.db, rt.worker_name, "worker", ",".join(queues),
                            settings.heartbeat_seconds)
        liveness.start()
        holder.update(rt=rt, liveness=liveness)

    try:
        _started(settings, start)
    except StartupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rt, liveness = holder["rt"], holder["liveness"]

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


def _per_device(args: argparse.Namespace, settings: Settings) -> int:
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
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not devices:
        print("error: --per-device found no GPU (CUDA_VISIBLE_DEVICES, "
              "NVIDIA_VISIBLE_DEVICES, nvidia-smi -L, torch); give the container its GPUs "
              "or run without --per-device", file=sys.stderr)
        return 2
    common = [sys.executable, "-m", "worker.cli", *(["--config", args.config]
                                                    if args.config else []),
              *(["-v"] if args.verbose else []), "worker", "--queues", args.queues,
              *(["--data-dir", args.data_dir] if args.data_dir else []),
              *(["--backend", args.backend] if args.backend else [])]
    sup = DeviceSupervisor(devices, lambda i: [*common, "--hostname",
                                               child_hostname(args.hostname, i)],
                           os.environ, grace=settings.shutdown_grace_seconds + 5)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: sup.request_stop())
    print(f"{len(devices)} GPU worker(s), one per device: {', '.join(devices)}", flush=True)
    sup.start()
    return sup.run()


def cmd_api(args: argparse.Namespace) -> int:
    """The HTTP service alone (health, metrics, JSON API, dashboard), on any node that
    reaches the database and the broker."""
    import uvicorn

    from worker.ops.api import create_app
    from worker.pipeline import tasks
    from worker.pipeline.celery_app import configure_celery, queue_depth

    settings = _settings(args)
    _warn_unknown()
    holder: dict[str, Any] = {}

    def start() -> None:
        rt = _existing(settings)
        configure_celery(settings)
        holder["app"] = create_app(settings, rt.db, queue_depth, tasks.enqueue_prepare)

    try:
        _started(settings, start)
    except (StartupError, NoDatabaseError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"cxr-gateway api on http://{settings.api_host}:{settings.api_port}/", flush=True)
    uvicorn.run(holder["app"], host=settings.api_host, port=settings.api_port,
                log_level="warning", access_log=False)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from worker.demo import run_demo

    settings = _settings(args)
    if args.allow_cpu:
        settings = settings.replace(allow_cpu=True)
    return run_demo(settings, Path(args.data_dir) if args.data_dir else None, args.timeout)


class NoDatabaseError(Exception):
    """A read command found no gateway database where it was pointed."""


def _existing(settings: Settings) -> Any:
    """The runtime of an existing gateway database; never creates one."""
    from worker.ops.overview import NoDatabase, check_database
    from worker.runtime import configure
    from worker.store.db import Database

    where = settings.database_file or logs.mask_url(settings.database_url)
    if settings.database_file is not None and not settings.database_file.exists():
        raise NoDatabaseError(
            f"no gateway database in {settings.data_dir} ({settings.database_file} does not "
            "exist): give --data-dir (or CXR_DATA_DIR) of a gateway's data")
    try:
        check_database(Database(settings.effective_database_url))
    except NoDatabase as exc:
        raise NoDatabaseError(f"{where} is not a gateway database: {exc}") from None
    return configure(settings, migrate=False, kind="cli")


def _read(args: argparse.Namespace) -> Any:
    try:
        return _existing(_settings(args))
    except NoDatabaseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def cmd_status(args: argparse.Namespace) -> int:
    """The dashboard's summary, in a terminal."""
    from worker.ops.overview import overview
    from worker.pipeline.celery_app import configure_celery, queue_depth

    rt = _read(args)
    configure_celery(rt.settings)
    o = overview(rt.db, queue_depth, rt.settings.liveness_timeout_seconds)
    if args.json:
        print(json.dumps(o, indent=2))
        return 0
    states = "  ".join(f"{k} {v}" for k, v in sorted(o["jobs_by_state"].items())) or "none"
    print(f"CXR Reason Gateway at {o['at']}  (research use only)")
    print(f"  jobs        {states}")
    inst = "  ".join(f"{k} {v}" for k, v in sorted(o["instances_by_admission"].items()))
    print(f"  instances   {inst or 'none'}")
    q = o["queue_depth"]
    print(f"  queues      cpu {q['cpu'] if q['cpu'] is not None else '?'}  "
          f"gpu {q['gpu'] if q['gpu'] is not None else '?'}")
    t = o["throughput"]
    print(f"  last hour   {t['jobs_done']} job(s) done, {t['instances_received']} "
          "instance(s) received")
    for state, v in o["stages"].items():
        p50 = f"{v['p50_s']:.2f}" if v["p50_s"] is not None else "-"
        p95 = f"{v['p95_s']:.2f}" if v["p95_s"] is not None else "-"
        print(f"  {state:<11} p50 {p50:>8} s  p95 {p95:>8} s  ({v['count']})")
    alive = [w["name"] for w in o["workers"] if w["alive"]]
    print(f"  processes   {', '.join(alive) or 'none alive'}")
    for f in o["failures"][:5]:
        print(f"  failed      job {f['job_id']}: {f['reason']}")
    for sk in o["skipped_studies"][:5]:
        print(f"  skipped     {sk['study_instance_uid']}: {sk['outcome']}")
    return 0


def cmd_jobs(args: argparse.Namespace) -> int:
    from worker.ops.overview import list_jobs
    from worker.store import jobs
    from worker.store.db import Job

    rt = _read(args)
    if args.action == "retry":
        return _retry(rt, args)
    with rt.db.session() as s:
        if args.action == "list":
            rows = list_jobs(s, args.state, limit=args.limit)
            if args.json:
                print(json.dumps(rows, indent=2))
                return 0
            print(f"{'job':>6}  {'v':>2}  {'state':<11} {'result':<12} {'updated':<24} "
                  "study / reason")
            for r in rows:
                print(f"{r['job_id']:>6}  {r['version']:>2}  {r['state']:<11} "
                      f"{r['status'] or '-':<12} {r['updated_at']:<24} "
                      f"{r['study_instance_uid']}" + (f"  {r['reason']}" if r["reason"]
                                                      else ""))
            if not rows:
                print("no jobs" + (f" in state {args.state}" if args.state else ""))
            return 0
        if args.job_id is None:
            print("error: give a job id: cxr-gateway jobs show ID", file=sys.stderr)
            return 2
        job_row = s.get(Job, args.job_id)
        if job_row is None:
            print(f"error: no job {args.job_id}", file=sys.stderr)
            return 2
        summary = jobs.job_summary(s, job_row)
        print(json.dumps(summary, indent=2) if args.json else render_job(summary))
    return 0


def render_job(j: dict[str, Any]) -> str:
    """``jobs show`` for people: what happened, when, what is next."""
    lines = [f"job {j['job_id']} v{j['version']}  {j['state']}"
             + (f": {j['reason']}" if j["reason"] else ""),
             f"  study     {j['study_instance_uid']}",
             f"  instance  {j['sop_instance_uid']}"]
    if j["status"]:
        labels = ", ".join(j["labels"]) or "none"
        lines.append(f"  result    {j['status']} ({j['backend']}); labels: {labels}")
    lines.append(f"  attempts  {j['attempts']} takeover(s), {j['retries']} inference "
                 f"retr{'y' if j['retries'] == 1 else 'ies'}"
                 + (f"; holder {j['holder']}" if j["holder"] else ""))
    if j["last_error"]:
        lines.append(f"  last error  {j['last_error']}")
    if j["next_attempt_at"]:
        lines.append(f"  next attempt  {j['next_attempt_at']}")
    if j["sr_sop_instance_uid"]:
        lines.append(f"  SR        {j['sr_sop_instance_uid']}  ({j['sr_path']})")
    for d in j["deliveries"]:
        nxt = f", next attempt {d['next_attempt_at']}" if d["next_attempt_at"] else ""
        lines.append(f"  delivery  {d['destination']}: {d['state']} after {d['attempts']} "
                     f"attempt(s){nxt} ({d['detail'] or 'not tried yet'})")
    lines.append("  timeline")
    for t in j["timeline"]:
        took = f"{t['seconds']:8.3f} s" if t["seconds"] is not None else "      ...  "
        lines.append(f"    {t['at']}  {t['state']:<11} {took}  {t['detail']}")
    return "\n".join(lines)


def _retry(rt: Any, args: argparse.Namespace) -> int:
    """Put one failed job (or all failed jobs) back in the queue."""
    from worker.pipeline import tasks
    from worker.pipeline.celery_app import configure_celery
    from worker.store import jobs
    from worker.store.db import Job

    configure_celery(rt.settings)
    with rt.db.session() as s:
        if args.failed:
            targets = list(s.scalars(select(Job.id).where(Job.state == jobs.FAILED)).all())
        elif args.job_id is not None:
            targets = [args.job_id]
        else:
            print("error: give a job id or --failed", file=sys.stderr)
            return 2
        retried = 0
        for job_id in targets:
            job = jobs.retry_failed(s, job_id)
            if job is not None:
                tasks.enqueue_prepare(job.id, job.version)
                retried += 1
    if not retried:
        print("error: nothing to retry (no failed job" + (
            f" {args.job_id})" if args.job_id is not None and not args.failed else "s)"),
            file=sys.stderr)
        return 2
    print(f"re-queued {retried} job(s)")
    return 0


def cmd_studies(args: argparse.Namespace) -> int:
    from worker.ops.overview import list_studies, study_detail

    rt = _read(args)
    with rt.db.session() as s:
        if args.action == "list":
            rows = list_studies(s, args.outcome, limit=args.limit)
            if args.json:
                print(json.dumps(rows, indent=2))
                return 0
            print(f"{'state':<9} {'inst':>4}  {'last received':<24} study / outcome")
            for r in rows:
                print(f"{r['state']:<9} {r['instances']:>4}  {r['last_received_at']:<24} "
                      f"{r['study_instance_uid']}  {r['outcome']}")
            if not rows:
                print("no studies" + (f" {args.outcome}" if args.outcome else ""))
            return 0
        if not args.study_uid:
            print("error: give a study: cxr-gateway studies show STUDY_INSTANCE_UID",
                  file=sys.stderr)
            return 2
        detail = study_detail(s, args.study_uid)
    if detail is None:
        print(f"error: no study {args.study_uid}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(detail, indent=2))
        return 0
    state = "open (quiet period running)" if not detail["assembled_at"] else detail["outcome"]
    print(f"study {detail['study_instance_uid']}: {state}")
    for i in detail["instances"]:
        print(f"  {i['admission']:<9} {i['modality'] or '?':<3} {i['sop_instance_uid']}  "
              f"from {i['calling_ae']}" + (f"  - {i['reason']}" if i["reason"] else ""))
    for j in detail["jobs"]:
        print(f"  job {j['job_id']} v{j['version']}: {j['state']}"
              + (f" - {j['reason']}" if j["reason"] else ""))
    return 0


def cmd_settings(args: argparse.Namespace) -> int:
    """The settings in effect and where each came from."""
    settings = _settings(args)
    found = sources(_config(args), None, **_overrides(args))
    width = max(len(env_name(n)) for n in FIELDS)
    print(f"{'setting':<{width}}  {'value':<40} source")
    for name in FIELDS:
        value = shown_value(settings, name)
        print(f"{env_name(name):<{width}}  {value:<40} {found[name]}")
    for line in unknown_variables():
        print(f"warning: {line}", file=sys.stderr)
    try:
        rt = _existing(settings)
        print(f"\ninstallation identity (root of every SR UID): {rt.installation_seed}")
    except NoDatabaseError:
        print(f"\ninstallation identity: none yet (the first serve creates the database in "
              f"{settings.data_dir})")
    return 0


def cmd_batch(args: argparse.Namespace) -> int:
    """Run (or resume) a named batch, or show one's progress; see worker/research/batch.py."""
    from tqdm import tqdm

    from dicom_gateway.retrieve import StudyQuery
    from worker.pipeline import tasks
    from worker.pipeline.celery_app import configure_celery
    from worker.research.batch import Batch, BatchError, BatchOptions, kind_of, status_of

    rt = _read(args)
    target = args.target
    if target[0] in ("status", "export"):
        if len(target) != 2:
            print(f"error: cxr-gateway batch {target[0]} NAME", file=sys.stderr)
            return 2
        try:
            if target[0] == "status":
                shown = status_of(rt, target[1])
                print(json.dumps(shown, indent=2) if args.json else _render_batch(shown))
                return 0
            from worker.research.batch import write_outputs
            from worker.store.db import BatchRun

            with rt.db.session() as s:
                run = s.scalar(select(BatchRun).where(BatchRun.name == target[1]))
            if run is None:
                raise BatchError(f"no batch named {target[1]!r}")
            out = Path(args.out) if args.out else rt.settings.data_dir / "batches" / run.name
            for path in write_outputs(rt, run, out).values():
                print(path)
            return 0
        except BatchError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    source = target[0]
    csv_path = Path(args.csv) if args.csv else None
    try:
        kind = kind_of(source, csv_path)
        name = args.name or f"{kind}-{Path(source.rstrip('/')).name or 'run'}"
        query = StudyQuery(args.date_from or "", args.date_to or "", args.modality or "",
                           tuple(args.accession or ()), tuple(args.study_uid or ()))
        options = BatchOptions(name=name, source=source if kind in ("pacs", "dicomweb")
                               else str(Path(source).resolve()), kind=kind, csv=csv_path,
                               query=query, retrieve=args.retrieve, send_srs=args.send_srs,
                               chunk=args.chunk, out_dir=Path(args.out) if args.out else None)
        configure_celery(rt.settings)
        batch = Batch(rt, options, tasks.enqueue_infer)
        total = batch.scan()
    except (BatchError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"batch {name}: {total} stud{'y' if total == 1 else 'ies'} from {source} "
          f"({kind}); results for {batch.key}", flush=True)
    bar = tqdm(total=total, unit="study", disable=args.no_progress, smoothing=0.05)

    def progress(counts: dict[str, int]) -> None:
        finished = sum(counts.get(k, 0) for k in ("done", "skipped", "failed"))
        bar.update(finished - bar.n)
        bar.set_postfix(skipped=counts.get("skipped", 0), failed=counts.get("failed", 0),
                        in_flight=counts.get("fetched", 0), refresh=False)

    try:
        batch.drive(progress)
    except KeyboardInterrupt:
        bar.close()
        print(f"stopped; nothing is lost: run the same command again (--name {name}) to "
              "finish", file=sys.stderr)
        return 130
    bar.close()
    paths = batch.write_outputs()
    counts = batch.counts()
    print(f"batch {name}: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())))
    for path in paths.values():
        print(f"  {path}")
    return 0


def _render_batch(shown: dict[str, Any]) -> str:
    counts = "  ".join(f"{k} {v}" for k, v in sorted(shown["counts"].items()))
    eta = f"{shown['eta_s']} s" if shown["eta_s"] is not None else "-"
    return (f"batch {shown['name']} ({shown['kind']}, {shown['source']})\n"
            f"  {shown['finished']} of {shown['total']} finished: {counts}\n"
            f"  rate {shown['rate_per_s']} studies/s over the last 10 min, ETA {eta}"
            + (f"\n  finished at {shown['finished_at']}" if shown["finished_at"] else ""))


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Predictions against CheXpert-style labels; the paper's Table 1 beside them."""
    from worker.research.evaluate import (
        EvaluationError,
        Policy,
        evaluate,
        load_labels,
        load_predictions,
        write,
    )

    try:
        policy = Policy(args.uncertain, args.blank, args.not_read)
        predictions = load_predictions(Path(args.predictions))
        labels = load_labels(Path(args.labels), policy, args.id_column)
        result = evaluate(predictions, labels, policy, args.bootstrap, args.seed)
    except (EvaluationError, OSError, ValueError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else Path(args.predictions).parent / "evaluation"
    paths = write(result, out)
    print((out / "evaluation.md").read_text())
    for path in paths.values():
        print(path)
    return 0


def cmd_health(args: argparse.Namespace) -> int:
    """For a container health check: is a gateway or worker process on this host alive
    (beating within the liveness timeout)?"""
    import socket

    from worker.store.db import Database, WorkerProcess, now

    settings = _settings(args)
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
    print(f"healthy: a process on {host} beat {now() - last:.1f} s ago")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cxr-gateway", description="CXR Reason Gateway: chest X-rays in over DICOM, "
        "NV-Reason-CXR-3B research-draft SRs out (not for clinical use).",
        epilog="Settings: environment variables CXR_*, or a TOML file (--config); "
               "'cxr-gateway settings' shows the values in effect.")
    p.add_argument("--config", help="TOML settings file (also CXR_CONFIG_FILE)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def data_dir(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--data-dir", help="the gateway's data folder (CXR_DATA_DIR)")

    serve = sub.add_parser("serve", help="the gateway: DICOM listener, assembler, reconciler, "
                           "HTTP service and an in-process worker")
    data_dir(serve)
    serve.add_argument("--port", type=int, help="DICOM listener port (CXR_PORT)")
    serve.add_argument("--backend", help="model backend (CXR_MODEL_BACKEND)")
    serve.add_argument("--api-port", type=int, help="HTTP port (CXR_API_PORT; 0 = off)")
    serve.add_argument("--no-worker", action="store_true",
                       help="no in-process worker at all")
    serve.add_argument("--worker-queues", default="cpu,gpu",
                       help="queues of the in-process worker (default cpu,gpu; 'cpu' on a "
                            "gateway node with GPU workers elsewhere)")
    serve.set_defaults(func=cmd_serve)

    wk = sub.add_parser("worker", help="a Celery worker for the cpu and/or gpu queue "
                        "(needs CXR_BROKER_URL)")
    data_dir(wk)
    wk.add_argument("--queues", default="cpu,gpu", help="comma list: cpu, gpu")
    wk.add_argument("--hostname", help="this worker's name, e.g. gpu1@%%h (%%h: the host, "
                    "%%p: the pid); default worker-<pid>@<host>, unique per process")
    wk.add_argument("--backend", help="model backend (CXR_MODEL_BACKEND)")
    wk.add_argument("--per-device", action="store_true",
                    help="one worker process per visible GPU, each pinned to its own "
                         "(CUDA_VISIBLE_DEVICES), restarted if it dies; names "
                         "<hostname>-gpuN-<pid>")
    wk.set_defaults(func=cmd_worker)

    api = sub.add_parser("api", help="the HTTP service alone: health, metrics, JSON API, "
                         "dashboard")
    data_dir(api)
    api.add_argument("--api-host", help="address (CXR_API_HOST)")
    api.add_argument("--api-port", type=int, help="port (CXR_API_PORT)")
    api.set_defaults(func=cmd_api)

    demo = sub.add_parser("demo", help="send RG1 through the whole path and print the result")
    demo.add_argument("--data-dir", help="keep the demo's data here (default: a temp folder)")
    demo.add_argument("--backend", help="model backend (default mock)")
    demo.add_argument("--allow-cpu", action="store_true",
                      help="with --backend local: allow slow CPU inference")
    demo.add_argument("--timeout", type=float, default=120.0,
                      help="seconds to wait for the SR (default 120)")
    demo.set_defaults(func=cmd_demo)

    run_p = sub.add_parser("run", help="one image through the model; JSON on stdout "
                           "(the NV-Reason-CXR wrapper's contract)")
    add_run_arguments(run_p)
    run_p.set_defaults(func=cmd_run, quiet=True)

    st = sub.add_parser("status", help="the dashboard's summary in a terminal")
    data_dir(st)
    st.add_argument("--json", action="store_true", help="as JSON")
    st.set_defaults(func=cmd_status, quiet=True)

    jobs_p = sub.add_parser("jobs", help="list, show or retry jobs")
    jobs_p.add_argument("action", choices=["list", "show", "retry"], help="what to do")
    jobs_p.add_argument("job_id", type=int, nargs="?", help="show/retry: the job")
    jobs_p.add_argument("--failed", action="store_true", help="retry: every failed job")
    jobs_p.add_argument("--state", help="list: only jobs in this state")
    jobs_p.add_argument("--limit", type=int, default=100, help="list: at most this many")
    jobs_p.add_argument("--json", action="store_true", help="list/show: as JSON")
    data_dir(jobs_p)
    jobs_p.set_defaults(func=cmd_jobs, quiet=True)

    studies = sub.add_parser("studies", help="studies and why each instance was or was not "
                             "admitted")
    studies.add_argument("action", choices=["list", "show"], help="what to do")
    studies.add_argument("study_uid", nargs="?", help="show: the Study Instance UID")
    studies.add_argument("--outcome", choices=["admitted", "skipped", "open"],
                         help="list: only these")
    studies.add_argument("--limit", type=int, default=100, help="list: at most this many")
    studies.add_argument("--json", action="store_true", help="as JSON")
    data_dir(studies)
    studies.set_defaults(func=cmd_studies, quiet=True)

    batch = sub.add_parser(
        "batch", help="retrospective studies through the pipeline: a DICOM folder, a CSV of "
        "PNG/JPEG, a PACS (C-FIND + C-MOVE/C-GET) or a DICOMweb server; 'batch status NAME'")
    batch.add_argument("target", nargs="+", metavar="SOURCE",
                       help="a folder, a CSV, 'pacs' (CXR_SOURCE_PACS) or AE@host:port, an "
                            "http(s) DICOMweb root; or: status NAME, export NAME")
    batch.add_argument("--name", help="the run's name (default from the source); the same "
                       "name resumes it")
    batch.add_argument("--csv", help="images: the CSV naming study id and file")
    batch.add_argument("--date-from", help="PACS/DICOMweb: studies from this date (YYYYMMDD)")
    batch.add_argument("--date-to", help="PACS/DICOMweb: studies up to this date")
    batch.add_argument("--modality", help="PACS/DICOMweb: ModalitiesInStudy, e.g. CR or DX")
    batch.add_argument("--accession", action="append", help="PACS/DICOMweb: an accession "
                       "number (repeat the option for several)")
    batch.add_argument("--study-uid", action="append", help="PACS/DICOMweb: a Study "
                       "Instance UID (repeat for several)")
    batch.add_argument("--retrieve", choices=["move", "get"], default="move",
                       help="PACS: C-MOVE to our listener (default) or C-GET")
    batch.add_argument("--send-srs", action="store_true",
                       help="also send each SR to CXR_DESTINATIONS (default: outbox only)")
    batch.add_argument("--chunk", type=int, default=100,
                       help="studies in flight at once (bounds memory and the queue)")
    batch.add_argument("--out", help="where predictions go (default DATA_DIR/batches/NAME)")
    batch.add_argument("--no-progress", action="store_true", help="no progress bar")
    batch.add_argument("--json", action="store_true", help="status: as JSON")
    data_dir(batch)
    batch.set_defaults(func=cmd_batch, quiet=True)

    ev = sub.add_parser("evaluate", help="predictions against CheXpert-style labels: "
                        "per-class precision, recall, F1, macro-F1, bootstrap CIs")
    ev.add_argument("predictions", help="a batch's predictions.jsonl or predictions.csv")
    ev.add_argument("labels", help="labels CSV: the 14 CheXpert columns (1, 0, -1, blank)")
    ev.add_argument("--uncertain", choices=["ignore", "positive", "negative"],
                    default="ignore", help="how -1 counts (default: ignored for that class)")
    ev.add_argument("--blank", choices=["negative", "ignore"], default="negative",
                    help="how a blank counts (default: negative)")
    ev.add_argument("--not-read", choices=["negative", "exclude"], default="negative",
                    help="refused/truncated/unparseable/no-label answers: as no labels "
                         "(default, as the training parser reads them) or left out")
    ev.add_argument("--id-column", help="labels: the study id column (default study_id, "
                    "else the folder of Path)")
    ev.add_argument("--bootstrap", type=int, default=1000,
                    help="bootstrap resamples for the 95%% intervals (0: none)")
    ev.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    ev.add_argument("--out", help="output folder (default: evaluation/ beside predictions)")
    ev.set_defaults(func=cmd_evaluate, quiet=True)

    health = sub.add_parser("health", help="exit 0 when a gateway or worker process on this "
                            "host is alive (for container health checks)")
    data_dir(health)
    health.set_defaults(func=cmd_health, quiet=True)

    settings_p = sub.add_parser("settings", help="the settings in effect, where each came "
                                "from, and this installation's identity")
    data_dir(settings_p)
    settings_p.set_defaults(func=cmd_settings, quiet=True)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet = getattr(args, "quiet", False) and not args.verbose
    logs.configure(verbose=args.verbose, quiet=quiet)
    logs.private_umask()
    try:
        return int(args.func(args))
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except NoDatabaseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
