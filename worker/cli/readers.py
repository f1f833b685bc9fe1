"""``cxr-gateway readers create|status|export|summary``: the paper's reader study on this
site's cases (issue 34).

``create`` fixes the cases, the readers and every reader's schedule from the seed (the
design: ``worker.store.reader_design``); readers then read at ``/read/NAME`` after logging
in with their named token (``cxr-gateway tokens add dr-a``).  ``status`` is each reader's
progress, ``export`` the tidy reads.csv and answers.csv, ``summary`` the figures: per
statement and condition the mean, deviation and count, report times for normal and
abnormal cases with the full-reasoning to no-AI ratio, its bootstrap interval and a paired
Wilcoxon test, the paper's four charts as PNG and a markdown table beside its numbers.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from worker.cli.common import add_group, add_reader, read_runtime
from worker.cli.errors import CommandError

if TYPE_CHECKING:
    from worker.cli.common import Commands
    from worker.runtime import Runtime
    from worker.store.reader_studies import ReaderStudy


def register(commands: Commands) -> None:
    """``readers create|status|export|summary``."""
    actions = add_group(commands, "readers", "reader studies as the paper ran them: no AI, "
                        "labels only, full reasoning; timed reports and Likert answers",
                        "create, status, export or summary")
    create = add_reader(actions, "create", "a reader study: cases, readers and every "
                        "reader's schedule, fixed from the seed", cmd_create)
    create.add_argument("name", help="the study's name (its page is /read/NAME)")
    create.add_argument("--cases", required=True, metavar="SPEC",
                        help="batch:NAME (a batch run's studies), rule:NAME (the studies a "
                             "routing rule processed) or a file of StudyInstanceUIDs")
    create.add_argument("--readers", required=True, metavar="A,B",
                        help="the readers' token names, comma-separated")
    create.add_argument("--seed", type=int, default=0, help="the schedule's seed (default 0)")
    create.add_argument("--labels", metavar="CSV|reviews",
                        help="reference labels telling normal from abnormal cases: a "
                             "CheXpert-style labels CSV, or 'reviews' (the reviewers' "
                             "verdicts)")
    create.add_argument("--allow-mock", action="store_true",
                        help="accept cases with mock results (the study says MOCK everywhere)")
    for name, what in (("status", "each reader's progress (every study without NAME)"),
                       ("export", "reads.csv and answers.csv (tidy)"),
                       ("summary", "the figures: tables, charts and a markdown summary")):
        parser = add_reader(actions, name, what, globals()[f"cmd_{name}"],
                            json_option=name != "export")
        parser.add_argument("name", nargs="?" if name == "status" else None,
                            help="the study")
        if name != "status":
            parser.add_argument("-o", "--out", help="the folder to write (default "
                                "DATA_DIR/readers/NAME)")


def _study(rt: Runtime, name: str) -> ReaderStudy:
    from worker.store import reader_studies

    with rt.db.session() as s:
        study = reader_studies.named(s, name)
    if study is None:
        raise CommandError(f"no reader study named {name!r} (cxr-gateway readers status)")
    return study


def cmd_create(args: argparse.Namespace) -> int:
    from worker.readers import cases
    from worker.store import reader_studies, tokens

    rt = read_runtime(args)
    readers = [r.strip() for r in args.readers.split(",") if r.strip()]
    with rt.db.session() as s:
        try:
            chosen = cases.choose(s, args.cases, args.allow_mock)
            given = cases.with_references(s, chosen, args.labels)
            study = reader_studies.create(
                s, args.name, given, readers, args.seed, rt.settings.readers_template,
                mock=chosen.mock, source=chosen.source, created_by="operator")
        except (reader_studies.StudyError, OSError) as exc:
            raise CommandError(str(exc)) from None
        live = {r["name"] for r in tokens.listing(s) if r["state"] == "active"}
    refs = [c.reference for c in given]
    print(f"reader study {study.name}: {len(given)} cases ({chosen.source}; "
          f"{refs.count('abnormal')} abnormal, {refs.count('normal')} normal, "
          f"{refs.count('')} without reference), {len(readers)} readers, "
          f"{3 * len(given)} reads each, seed {args.seed}"
          + ("; MOCK results" if study.mock else ""))
    print(f"readers log in at the dashboard with their token and open /read/{study.name}")
    for reader in readers:
        if reader not in live:
            print(f"warning: {reader} has no live token yet (cxr-gateway tokens add {reader})",
                  file=sys.stderr)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from worker.store import reader_studies

    rt = read_runtime(args)
    with rt.db.session() as s:
        chosen = ([_study(rt, args.name)] if args.name else reader_studies.all_studies(s))
        rows: list[dict[str, Any]] = [{"name": st.name, "mock": st.mock, "source": st.source,
                 "progress": reader_studies.progress(s, st)} for st in chosen]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        print(f"{row['name']}{' (MOCK)' if row['mock'] else ''}: {row['source']}")
        for p in row["progress"]:
            where = "finished" if p["next_position"] is None else f"next {p['next_position']}"
            print(f"  {p['reader']:<20} {p['done']:>5} / {p['total']:<5} {where}")
    if not rows:
        print("no reader studies (cxr-gateway readers create NAME --cases ... --readers ...)")
    return 0


def _out(rt: Runtime, args: argparse.Namespace) -> Path:
    return Path(args.out) if args.out else rt.settings.data_dir / "readers" / args.name


def cmd_export(args: argparse.Namespace) -> int:
    from worker.readers import export

    rt = read_runtime(args)
    study = _study(rt, args.name)
    with rt.db.session() as s:
        paths = export.write_csvs(s, study, _out(rt, args))
    for path in paths:
        print(path)
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    from worker.readers import figures, summary

    rt = read_runtime(args)
    study = _study(rt, args.name)
    with rt.db.session() as s:
        figures_of = summary.of_study(s, study)
    if args.json:
        print(json.dumps(figures_of, indent=2))
        return 0
    paths, warning = figures.write(figures_of, _out(rt, args))
    print(figures.markdown(figures_of))
    for path in paths:
        print(f"wrote {path}", file=sys.stderr)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    return 0
