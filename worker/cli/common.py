"""What the commands share: settings from the command line, the data-folder option,
reading an existing gateway database, and leaving a process that runs library threads."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from worker import logs
from worker.cli.errors import DatabaseError, NoGatewayDatabase, NoSchemaError, first_line
from worker.settings import Settings, load_settings, unknown_variables

if TYPE_CHECKING:
    from worker.runtime import Runtime

    # what ``ArgumentParser.add_subparsers`` returns; each command module adds to it
    Commands = argparse._SubParsersAction[argparse.ArgumentParser]

log = logging.getLogger("worker.cli")

# command-line option -> setting it overrides (the command line wins over file and env)
OPTION_SETTINGS = (("data_dir", "data_dir"), ("port", "port"), ("backend", "model_backend"),
                   ("api_port", "api_port"), ("api_host", "api_host"))


def add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", help="the gateway's data folder (CXR_DATA_DIR)")


def add_reader(commands: Commands, name: str, help: str,
               func: Callable[[argparse.Namespace], int],
               json_option: bool = False) -> argparse.ArgumentParser:
    """A command that reads an existing data folder and prints (no log lines of its own);
    ``json_option``: it can print JSON instead (``--json``)."""
    parser = commands.add_parser(name, help=help)
    if json_option:
        parser.add_argument("--json", action="store_true", help="as JSON")
    add_data_dir(parser)
    parser.set_defaults(func=func, quiet=True)
    return parser


def add_group(commands: Commands, name: str, help: str, actions: str) -> Commands:
    """A command of several actions (``tokens add|list|revoke``): their sub-parsers."""
    group = commands.add_parser(name, help=help)
    return group.add_subparsers(dest=f"{name}_action", required=True, metavar="ACTION",
                                help=actions)


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The settings this command line gives, by setting name."""
    out: dict[str, Any] = {}
    for option, field in OPTION_SETTINGS:
        value = getattr(args, option, None)
        if value is not None:
            out[field] = Path(value) if field == "data_dir" else value
    return out


def config_file(args: argparse.Namespace) -> Path | None:
    return Path(args.config) if getattr(args, "config", None) else None


def load(args: argparse.Namespace) -> Settings:
    """The settings in effect for this command: defaults < file < environment < options."""
    return load_settings(config_file(args), None, **overrides(args))


def warn_unknown() -> None:
    """A misspelt CXR_ variable would otherwise be silently ignored."""
    for line in unknown_variables():
        print(f"warning: {line}", file=sys.stderr)


def refuse_short_token(settings: Settings) -> None:
    """``serve`` and ``api`` do not start an HTTP service that a short operator token
    opens (``worker.ops.api.auth.operator_token_problem``): one ``error:`` line."""
    from worker.cli.errors import CommandError
    from worker.ops.api.auth import operator_token_problem

    problem = operator_token_problem(settings) if settings.api_port else None
    if problem:
        raise CommandError(problem)


def existing_runtime(settings: Settings) -> Runtime:
    """The runtime of an existing gateway database; never creates one (a read command
    pointed at the wrong folder must not leave an empty gateway behind)."""
    from worker.ops.overview import NoDatabase, check_database
    from worker.runtime import configure
    from worker.store.db import Database

    where = settings.database_file or logs.mask_url(settings.database_url)
    if settings.database_file is not None and not settings.database_file.exists():
        raise NoGatewayDatabase(
            f"no gateway database in {settings.data_dir} ({settings.database_file} does not "
            "exist): give --data-dir (or CXR_DATA_DIR) of a gateway's data")
    try:
        check_database(Database(settings.effective_database_url))
    except NoDatabase as exc:
        raise NoGatewayDatabase(f"{where} is not a gateway database: {exc}") from None
    return configure(settings, migrate=False, kind="cli")


def read_runtime(args: argparse.Namespace) -> Runtime:
    """For the commands that only read (and retry) what a gateway recorded."""
    return existing_runtime(load(args))


def require_schema(settings: Settings) -> None:
    """A separate worker never creates the schema: ``serve`` migrates at its start, and
    several workers starting at once (``--per-device``) must not race to do it."""
    from sqlalchemy import inspect
    from sqlalchemy.exc import SQLAlchemyError

    from worker.store.db import make_engine

    url = settings.effective_database_url
    if settings.database_file is not None and not settings.database_file.exists():
        raise NoSchemaError(url)
    engine = make_engine(url)
    try:
        tables = set(inspect(engine).get_table_names())
    except SQLAlchemyError as exc:
        raise DatabaseError(url, first_line(exc)) from exc
    finally:
        engine.dispose()
    if not {"jobs", "workers"} <= tables:
        raise NoSchemaError(url)


def exit_now(code: int = 0) -> NoReturn:
    """Leave without waiting for library threads (broker connections, association
    threads): everything acknowledged is already on disk and in the database, and what is
    in flight is taken over by the reconciler."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def stop_within(stop: Callable[[], Any], grace: float, what: str) -> None:
    """Run ``stop`` for at most ``grace`` seconds: a stuck library never keeps a
    stopping process alive."""
    thread = threading.Thread(target=stop, name="shutdown", daemon=True)
    thread.start()
    thread.join(grace)
    if thread.is_alive():
        log.warning("%s did not stop within %.1f s; exiting anyway (in-flight work is "
                    "taken over)", what, grace)
