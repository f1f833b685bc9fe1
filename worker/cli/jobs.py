"""``cxr-gateway jobs list|show|retry``: the jobs a gateway recorded, one job's whole
story, and putting failed jobs back in the queue."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from worker.cli.common import add_data_dir, read_runtime
from worker.cli.errors import BrokerError, CommandError, translate

if TYPE_CHECKING:
    from worker.cli.common import Commands
    from worker.runtime import Runtime


def register(commands: Commands) -> None:
    parser = commands.add_parser("jobs", help="list, show or retry jobs")
    parser.add_argument("action", choices=list(ACTIONS), help="what to do")
    parser.add_argument("job_id", type=int, nargs="?", help="show/retry: the job")
    parser.add_argument("--failed", action="store_true", help="retry: every failed job")
    parser.add_argument("--state", help="list: only jobs in this state")
    parser.add_argument("--limit", type=int, default=100, help="list: at most this many")
    parser.add_argument("--json", action="store_true", help="list/show: as JSON")
    add_data_dir(parser)
    parser.set_defaults(func=cmd_jobs, quiet=True)


def cmd_jobs(args: argparse.Namespace) -> int:
    return ACTIONS[args.action](read_runtime(args), args)


def list_jobs(rt: Runtime, args: argparse.Namespace) -> int:
    from worker.ops.overview import list_jobs as job_rows

    with rt.db.session() as s:
        rows = job_rows(s, args.state, limit=args.limit)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'job':>6}  {'v':>2}  {'state':<11} {'result':<12} {'updated':<24} "
          "study / reason")
    for r in rows:
        print(f"{r['job_id']:>6}  {r['version']:>2}  {r['state']:<11} "
              f"{r['status'] or '-':<12} {r['updated_at']:<24} "
              f"{r['study_instance_uid']}" + (f"  {r['reason']}" if r["reason"] else ""))
    if not rows:
        print("no jobs" + (f" in state {args.state}" if args.state else ""))
    return 0


def show_job(rt: Runtime, args: argparse.Namespace) -> int:
    from worker.store import jobs
    from worker.store.db import Job

    if args.job_id is None:
        raise CommandError("give a job id: cxr-gateway jobs show ID")
    with rt.db.session() as s:
        job_row = s.get(Job, args.job_id)
        if job_row is None:
            raise CommandError(f"no job {args.job_id}")
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
        what = f" ({d['document']})" if d["document"] else ""
        lines.append(f"  delivery{what}  {d['destination']}: {d['state']} after {d['attempts']} "
                     f"attempt(s){nxt} ({d['detail'] or 'not tried yet'})")
    lines.append("  timeline")
    for t in j["timeline"]:
        took = f"{t['seconds']:8.3f} s" if t["seconds"] is not None else "      ...  "
        lines.append(f"    {t['at']}  {t['state']:<11} {took}  {t['detail']}")
    return "\n".join(lines)


def retry_jobs(rt: Runtime, args: argparse.Namespace) -> int:
    """Put one failed job (or all failed jobs) back in the queue."""
    from sqlalchemy import select

    from worker.pipeline import tasks
    from worker.pipeline.celery_app import configure_celery
    from worker.store import jobs
    from worker.store.db import Job

    configure_celery(rt.settings)
    retried = 0
    with rt.db.session() as s:
        if args.failed:
            targets = list(s.scalars(select(Job.id).where(Job.state == jobs.FAILED)).all())
        elif args.job_id is not None:
            targets = [args.job_id]
        else:
            raise CommandError("give a job id or --failed")
        for job_id in targets:
            job = jobs.retry_failed(s, job_id)
            if job is not None:
                publish(rt, tasks.enqueue_prepare, job.id, job.version)
                retried += 1
    if not retried:
        raise CommandError("nothing to retry (no failed job" + (
            f" {args.job_id})" if args.job_id is not None and not args.failed else "s)"))
    print(f"re-queued {retried} job(s)")
    return 0


def publish(rt: Runtime, send: Callable[..., Any], *message: Any) -> None:
    """Send one message; a broker that cannot be reached is the user's one error line (the
    job stays queued in the database, where the reconciler publishes it again)."""
    try:
        send(*message)
    except Exception as exc:
        typed = translate(exc, rt.settings)
        if isinstance(typed, BrokerError):
            raise typed from exc
        raise


ACTIONS: dict[str, Callable[[Runtime, argparse.Namespace], int]] = {
    "list": list_jobs, "show": show_job, "retry": retry_jobs}
