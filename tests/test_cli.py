"""The command line: every command listed and documented, batch's real sub-commands,
typed start-up errors, and a worker started before any serve on a fresh database."""

from __future__ import annotations

import argparse
import errno
import os
import subprocess
from pathlib import Path

import pytest

import worker.cli
from tests.peers import BIN, fresh_database
from worker.cli import build_parser, main
from worker.cli.errors import (
    BrokerError,
    DatabaseError,
    DataFolderError,
    ListenerProcessError,
    NoSchemaError,
    PortInUseError,
    translate,
)
from worker.settings import load_settings

COMMANDS = ("serve", "worker", "api", "demo", "run", "status", "health", "jobs", "studies",
            "batch", "evaluate", "settings", "rules", "ask", "thread", "review", "reviews",
            "tokens", "readers")


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def test_help_and_the_docstring_name_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert set(subcommands(build_parser())) == set(COMMANDS)
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    shown = capsys.readouterr().out
    doc = worker.cli.__doc__ or ""
    for command in COMMANDS:
        assert f"    {command} " in shown, command
        assert f"``{command}" in doc, command


def test_batch_has_run_status_and_export(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["batch", "--help"])
    shown = capsys.readouterr().out
    for action in ("run", "status", "export"):
        assert f"    {action} " in shown, shown
    parser = build_parser()
    status = parser.parse_args(["batch", "status", "q1", "--json", "--data-dir", "d"])
    assert (status.func.__name__, status.name, status.json) == ("cmd_status", "q1", True)
    run = parser.parse_args(["batch", "run", "pacs", "--name", "q1", "--chunk", "2"])
    assert (run.func.__name__, run.source, run.name, run.chunk) == ("cmd_run", "pacs", "q1", 2)
    export = parser.parse_args(["batch", "export", "q1", "--out", "o"])
    assert (export.func.__name__, export.name, export.out) == ("cmd_export", "q1", "o")


def test_every_option_at_every_level_has_help() -> None:
    missing: list[str] = []

    def walk(parser: argparse.ArgumentParser, path: str) -> None:
        for option in parser._actions:
            if option.help is None and option.dest != "help":
                missing.append(f"{path} {option.option_strings or option.dest}")
        for name, sub in subcommands(parser).items():
            walk(sub, f"{path} {name}")

    walk(build_parser(), "cxr-gateway")
    assert missing == []


def test_library_errors_become_typed_errors_naming_the_setting(tmp_path: Path) -> None:
    from kombu.exceptions import OperationalError as KombuOperationalError
    from sqlalchemy.exc import OperationalError as SQLOperationalError

    from worker.ingest.processes import ListenerStartError

    settings = load_settings(None, {"CXR_DATA_DIR": str(tmp_path), "CXR_PORT": "11112",
                                    "CXR_BROKER_URL": "redis://:pw@127.0.0.1:1/0"})
    # kombu's OperationalError is the broker's, not the database's (both share the name)
    broker = translate(KombuOperationalError("Connection refused"), settings)
    assert isinstance(broker, BrokerError) and "CXR_BROKER_URL" in str(broker)
    assert "pw" not in str(broker)
    database = translate(SQLOperationalError("SELECT 1", {}, Exception("no such host")),
                         settings)
    assert isinstance(database, DatabaseError) and "CXR_DATABASE_URL" in str(database)
    assert "no such host" in str(database)
    dicom = translate(OSError(errno.EADDRINUSE, "Address already in use"), settings)
    assert isinstance(dicom, PortInUseError) and "CXR_PORT" in str(dicom)
    http = translate(OSError(errno.EADDRINUSE, "the HTTP service cannot listen on x"),
                     settings)
    assert isinstance(http, PortInUseError) and "CXR_API_PORT" in str(http)
    folder = translate(PermissionError(errno.EACCES, "Permission denied", "x"), settings)
    assert isinstance(folder, DataFolderError) and "CXR_DATA_DIR" in str(folder)
    listener = translate(ListenerStartError("listener process 1 cannot start"), settings)
    assert isinstance(listener, ListenerProcessError)
    assert "CXR_LISTENER_PROCESSES" in str(listener)
    assert translate(ValueError("a bug"), settings) is None  # keeps its traceback


def worker_on(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("CXR_")}
    full.update(env, CXR_BROKER_URL="redis://127.0.0.1:6379/0")
    return subprocess.run([str(BIN / "cxr-gateway"), "worker", "--queues", "gpu"],
                          capture_output=True, text=True, env=full, cwd=cwd, timeout=120)


def says_serve_creates_the_schema(out: subprocess.CompletedProcess[str]) -> None:
    assert out.returncode == 2, (out.returncode, out.stdout, out.stderr)
    errors = [ln for ln in out.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in out.stderr, out.stderr
    assert "no gateway tables yet" in errors[0] and "cxr-gateway serve" in errors[0]
    assert "CXR_DATABASE_URL" in errors[0]
    assert "no such table" not in out.stderr


@pytest.mark.integration  # the CLI as a subprocess, PostgreSQL
def test_a_worker_before_any_serve_says_which_command_creates_the_schema(
        tmp_path: Path) -> None:
    from worker.cli.common import require_schema
    from worker.store.db import Database

    says_serve_creates_the_schema(worker_on({"CXR_DATA_DIR": str(tmp_path / "d")}, tmp_path))
    assert not (tmp_path / "d" / "gateway.db").exists()  # nothing made on the way
    url, drop = fresh_database()
    try:
        says_serve_creates_the_schema(worker_on({"CXR_DATA_DIR": str(tmp_path / "pg"),
                                                 "CXR_DATABASE_URL": url}, tmp_path))
        db = Database(url)
        db.migrate()  # what serve does at its start
        db.engine.dispose()
        settings = load_settings(None, {"CXR_DATA_DIR": str(tmp_path / "pg"),
                                        "CXR_DATABASE_URL": url})
        require_schema(settings)  # now a worker may start
    finally:
        drop()
    with pytest.raises(NoSchemaError):
        require_schema(load_settings(None, {"CXR_DATA_DIR": str(tmp_path / "other")}))


def test_batch_status_and_export_of_an_unknown_run_are_one_error_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from worker.runtime import configure

    settings = load_settings(None, {"CXR_DATA_DIR": str(tmp_path)})
    configure(settings).db.engine.dispose()  # a gateway database, as serve makes it
    for action in ("status", "export"):
        assert main(["batch", action, "nope", "--data-dir", str(tmp_path)]) == 2
        err = capsys.readouterr().err.splitlines()
        assert err == ["error: no batch named 'nope'"], err
