"""``cxr-gateway studies list|show``: the studies a gateway received and why each instance
was or was not admitted."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from worker.cli.common import add_data_dir, read_runtime
from worker.cli.errors import CommandError

if TYPE_CHECKING:
    from worker.cli.common import Commands


def register(commands: Commands) -> None:
    parser = commands.add_parser("studies", help="studies and why each instance was or was "
                                 "not admitted")
    parser.add_argument("action", choices=["list", "show"], help="what to do")
    parser.add_argument("study_uid", nargs="?", help="show: the Study Instance UID")
    parser.add_argument("--outcome", choices=["admitted", "skipped", "open"],
                        help="list: only these")
    parser.add_argument("--limit", type=int, default=100, help="list: at most this many")
    parser.add_argument("--json", action="store_true", help="as JSON")
    add_data_dir(parser)
    parser.set_defaults(func=cmd_studies, quiet=True)


def cmd_studies(args: argparse.Namespace) -> int:
    return list_studies(args) if args.action == "list" else show_study(args)


def list_studies(args: argparse.Namespace) -> int:
    from worker.ops.overview import list_studies as study_rows

    rt = read_runtime(args)
    with rt.db.session() as s:
        rows = study_rows(s, args.outcome, limit=args.limit)
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


def show_study(args: argparse.Namespace) -> int:
    from worker.ops.overview import study_detail

    rt = read_runtime(args)
    if not args.study_uid:
        raise CommandError("give a study: cxr-gateway studies show STUDY_INSTANCE_UID")
    with rt.db.session() as s:
        detail = study_detail(s, args.study_uid)
    if detail is None:
        raise CommandError(f"no study {args.study_uid}")
    print(json.dumps(detail, indent=2) if args.json else render_study(detail))
    return 0


def render_study(detail: dict[str, Any]) -> str:
    """``studies show`` for people: each instance's admission and each job's state."""
    state = "open (quiet period running)" if not detail["assembled_at"] else detail["outcome"]
    lines = [f"study {detail['study_instance_uid']}: {state}"]
    for i in detail["instances"]:
        lines.append(f"  {i['admission']:<9} {i['modality'] or '?':<3} "
                     f"{i['sop_instance_uid']}  from {i['calling_ae']}"
                     + (f"  - {i['reason']}" if i["reason"] else ""))
    for j in detail["jobs"]:
        lines.append(f"  job {j['job_id']} v{j['version']}: {j['state']}"
                     + (f" - {j['reason']}" if j["reason"] else ""))
    return "\n".join(lines)
