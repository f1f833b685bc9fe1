"""``cxr-gateway rules check|test``: validate a site's routing rules, and ask what the
gateway would do with a file without sending it.

``check`` reports every problem of the settings file's ``[[rules]]`` and
``[destination_sets]`` as ``error: FILE:LINE: ...`` and exits 2 (the TOML parser gives no
line numbers, so ``dicom_gateway.routing.toml_lines`` finds them in the text).  ``test``
reads the headers of a file or of every file under a folder, routes each study as the
assembler would (the rules, then the built-in admission) and prints, per instance, each
rule tried
with each condition term's keyword and whether it held (never the value), and what would
happen.  It opens no database and writes no file: nothing is stored.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from worker.cli.common import load, overrides
from worker.cli.errors import CommandError
from worker.settings import CONFIG_FILE_VAR, SettingsError, load_settings

if TYPE_CHECKING:
    from dicom_gateway.routing.rules import RuleSet
    from dicom_gateway.routing.study import RoutedStudy
    from worker.cli.common import Commands
    from worker.settings import Settings


def register(commands: Commands) -> None:
    parser = commands.add_parser("rules", help="routing rules: check the settings file, or "
                                 "test what would happen to a DICOM file (stores nothing)")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION",
                                    help="check or test")
    check_p = actions.add_parser("check", help="validate the rules and destination sets "
                                 "(one error: FILE:LINE line per problem, exit 2)")
    test_p = actions.add_parser("test", help="what the gateway would do with a DICOM file "
                                "or a folder of them (stores nothing)")
    test_p.add_argument("path", nargs="+", help="DICOM files or folders of them")
    test_p.add_argument("--calling-ae", default="",
                        help="the calling AE title to assume (default: none, so CallingAE "
                             "is missing)")
    test_p.add_argument("--called-ae", default=None,
                        help="the called AE title to assume (default: CXR_AE_TITLE)")
    for sub in (check_p, test_p):
        sub.add_argument("--config", dest="rules_config",
                         help="the TOML settings file (default: the global --config or "
                              "CXR_CONFIG_FILE)")
        sub.set_defaults(func=cmd_rules, quiet=True)


def _config(args: argparse.Namespace) -> Path | None:
    given = args.rules_config or getattr(args, "config", None) or \
        os.environ.get(CONFIG_FILE_VAR)
    return Path(given) if given else None


def cmd_rules(args: argparse.Namespace) -> int:
    return check(args) if args.action == "check" else test(args)


def check(args: argparse.Namespace) -> int:
    from dicom_gateway.routing.rules_file import check_text

    path = _config(args)
    if path is None:
        raise CommandError("no settings file to check: give --config FILE (or "
                           f"{CONFIG_FILE_VAR})")
    try:
        text = path.read_text()
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc}") from None
    rules, problems = check_text(text)
    for p in problems:
        print(p.render(str(path)), file=sys.stderr)
    if problems:
        return 2
    try:  # the rest of the file (and the environment) must load too
        load_settings(path, **overrides(args))
    except SettingsError as exc:
        print(f"error: {path}: {exc}", file=sys.stderr)
        return 2
    for warning in pattern_warnings(rules):
        print(f"warning: {path}:{warning}", file=sys.stderr)
    names = ", ".join(r.name for r in rules.rules) or "none: the built-in admission only"
    print(f"ok: {path}: {len(rules.rules)} rule(s) ({names}), "
          f"{len(rules.destination_sets)} destination set(s)")
    return 0


def pattern_warnings(rules: RuleSet) -> list[str]:
    """"LINE: ..." for each ``matches`` pattern with nested quantifiers, the shape that can
    backtrack for minutes on one crafted value (it is cut off, and counted false)."""
    from dicom_gateway.routing.patterns import SEARCH_SECONDS, nested_quantifiers

    out = []
    for rule in rules.rules:
        for term in rule.tree.terms():
            if term.pattern is not None and nested_quantifiers(term.pattern.text):
                out.append(f"{rule.line}: rule {rule.name!r}: {term.field} matches "
                           f"{term.pattern.text!r}: nested quantifiers can backtrack "
                           f"exponentially on some values; each search stops after "
                           f"{SEARCH_SECONDS * 1000:.0f} ms and counts as false")
    return out


def _settings(args: argparse.Namespace) -> Settings:
    path = _config(args)
    if args.rules_config:
        return load_settings(path, **overrides(args))
    return load(args) if path is None else load_settings(path, **overrides(args))


def _files(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    if root.is_dir():
        return sorted(p for p in root.rglob("*") if p.is_file())
    raise CommandError(f"{root}: no such file or folder")


def test(args: argparse.Namespace) -> int:
    from pydicom import dcmread
    from pydicom.errors import InvalidDicomError

    from dicom_gateway.routing.admission import Candidate
    from dicom_gateway.routing.facts import Facts
    from worker.ingest.routing import rules_of

    settings = _settings(args)
    rules: RuleSet = rules_of(settings)
    called = settings.ae_title if args.called_ae is None else args.called_ae
    studies: dict[str, list[tuple[Path, Any, Facts]]] = defaultdict(list)
    unread = 0
    for f in (f for given in args.path for f in _files(Path(given))):
        try:
            ds = dcmread(f, defer_size=1024)
            cand = Candidate.from_dataset(ds)
        except (InvalidDicomError, AttributeError, OSError, ValueError) as exc:
            print(f"{f}: not read as DICOM ({type(exc).__name__}); skipped")
            unread += 1
            continue
        studies[str(ds.get("StudyInstanceUID", ""))].append(
            (f, cand, Facts(ds, args.calling_ae, called)))
    print(f"rules: {len(rules.rules)} ({', '.join(r.name for r in rules.rules) or 'none'}),"
          " then the built-in admission; nothing is stored")
    for study_uid, members in studies.items():
        _print_study(settings, rules, study_uid, members, args.calling_ae)
    if not studies:
        print("no DICOM instances found" + (f" ({unread} file(s) not DICOM)" if unread else ""))
        return 1
    return 0


def _print_study(settings: Settings, rules: RuleSet, study_uid: str,
                 members: list[tuple[Path, Any, Any]], calling_ae: str) -> None:
    from dicom_gateway.routing.patterns import SEARCH_SECONDS
    from dicom_gateway.routing.study import route_study

    routed: RoutedStudy = route_study(rules, [(c, facts) for _, c, facts in members])
    print(f"\nstudy {study_uid}: {routed.outcome} (decided by rule {routed.rule})")
    for rule, terms in routed.timed_out.items():
        print(f"  time-out: rule {rule!r}: {', '.join(terms)} ran past "
              f"{SEARCH_SECONDS * 1000:.0f} ms and counted as false")
    for path, cand, _ in members:
        uid = cand.sop_instance_uid
        decision = routed.decisions[uid]
        print(f"  {path}  instance {uid}")
        for ev in decision.evaluations:
            print(f"    {ev.explain()}")
        if decision.is_default:
            print("    no rule matched: the built-in admission (default rule) decides")
        if uid == routed.admitted:
            print(f"    -> {_what_happens(settings, routed, calling_ae)}")
        else:
            print(f"    -> skipped: {routed.skipped.get(uid, 'not admitted')}")


def _what_happens(settings: Settings, routed: RoutedStudy, calling_ae: str) -> str:
    from worker.ingest.assembler import job_priority
    from worker.store.jobs import BATCH_PRIORITY

    priority = job_priority(routed.priority, None, calling_ae, settings.batch_calling_aets)
    name = "batch" if priority == BATCH_PRIORITY else "live"
    dests = settings.destination_set(routed.destinations)
    if routed.destinations and routed.destinations in settings.destination_sets:
        where = f"destination set {routed.destinations!r}"
    else:
        where = "the default destinations"
    listed = ", ".join(str(d) for d in dests) or "none: SR kept in the outbox"
    return (f"admitted by rule {routed.rule!r}: a job at {name} priority, its SR to {where} "
            f"({listed})")
