"""``cxr-gateway``: the command line, one module per command group.

Processes: ``serve`` (the gateway), ``worker`` (a Celery worker; ``--per-device`` one per
GPU), ``api`` (the HTTP service alone), ``demo`` (the whole path on one machine).
The model alone: ``run`` (one image, NVIDIA's wrapper contract).  Reading a gateway:
``status``, ``health``, ``jobs list|show|retry``, ``studies list|show``, ``settings``.
Research: ``batch run|status|export``, ``evaluate``.
Routing (issue 23): ``rules check|test`` (validate the rules; what a file would meet).
Review (issue 25): ``review JOB`` (a reviewer's verdict), ``reviews export|agreement``,
``tokens add|list|revoke`` (named API tokens).
Reader studies (issue 34): ``readers create|status|export|summary``.
Follow-up questions (issue 25): ``ask JOB "question"`` (the model answers; ``--to-pacs``
an addendum SR), ``thread JOB`` (the study's conversation).

Each module registers its own parser next to the handler that reads its options
(``register(commands)``); this one assembles them in ``COMMAND_MODULES`` order, which is
the order ``--help`` lists them.  A mistake a user can fix ends with one ``error:`` line
that names what to change and exit status 2, never a traceback (``worker/cli/errors.py``).

This package may import every other part of ``worker`` (it is where they are started);
nothing imports it but the ``cxr-gateway`` entry point and ``python -m worker.cli``.
Handlers import what they start inside themselves, so that ``cxr-gateway settings`` or
``evaluate`` never loads the DICOM network stack, Celery or the model.
"""

from __future__ import annotations

import argparse
import sys

from worker import logs
from worker.cli import (
    api,
    ask,
    batch,
    demo,
    evaluate,
    jobs,
    readers,
    review,
    rules,
    run,
    serve,
    settings,
    status,
    studies,
    tokens,
)
from worker.cli import worker as worker_command
from worker.cli.errors import CommandError
from worker.settings import SettingsError

__all__ = ["build_parser", "main"]

COMMAND_MODULES = (serve, worker_command, api, demo, run, status, jobs, studies, rules,
                   batch, evaluate, review, readers, tokens, ask, settings)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cxr-gateway", description="CXR Reason Gateway: chest X-rays in over DICOM, "
        "NV-Reason-CXR-3B research-draft SRs out (not for clinical use).",
        epilog="Settings: environment variables CXR_*, or a TOML file (--config); "
               "'cxr-gateway settings' shows the values in effect.")
    parser.add_argument("--config", help="TOML settings file (also CXR_CONFIG_FILE)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                     help="what to run (each command has its own --help)")
    for module in COMMAND_MODULES:
        module.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet = getattr(args, "quiet", False) and not args.verbose
    logs.configure(verbose=args.verbose, quiet=quiet)
    logs.private_umask()
    try:
        return int(args.func(args))
    except (SettingsError, CommandError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
