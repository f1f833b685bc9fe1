"""Settings (values, sources, validation), start-up mistakes, and the docs kept in step."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from dicom_gateway.transfer.destinations import Destination
from tests.peers import BIN, free_port
from worker.settings import SettingsError, load_settings, settings_table, sources

ROOT = Path(__file__).resolve().parent.parent


def cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
        timeout: float = 60) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("CXR_")}
    full.update(env or {})
    return subprocess.run([str(BIN / "cxr-gateway"), *args], capture_output=True, text=True,
                          env=full, cwd=cwd, timeout=timeout)


def test_env_overrides_file(tmp_path: Path) -> None:
    cfg = tmp_path / "cxr.toml"
    cfg.write_text('port = 104\nae_title = "FROMFILE"\ndestinations = ["A@h:1", "B@h:2"]\n')
    s = load_settings(cfg, {"CXR_PORT": "4242", "CXR_ALLOWED_CALLING_AETS": "X, Y"})
    assert s.port == 4242 and s.ae_title == "FROMFILE"
    assert s.destinations == (Destination("A", "h", 1), Destination("B", "h", 2))
    assert s.allowed_calling_aets == ("X", "Y")
    assert s.effective_database_url.startswith("sqlite:///")
    where = sources(cfg, {"CXR_PORT": "4242"}, data_dir=tmp_path)
    assert where["port"] == "environment CXR_PORT"
    assert where["ae_title"] == f"file {cfg}"
    assert where["data_dir"] == "command line" and where["host"] == "default"


@pytest.mark.parametrize(("env", "names"), [
    ({"CXR_PORT": "eleven"}, "CXR_PORT"), ({"CXR_PORT": "99999"}, "CXR_PORT"),
    ({"CXR_PORT": "0"}, "CXR_PORT"), ({"CXR_STUDY_QUIET_SECONDS": "-5"}, "CXR_STUDY_QUIET"),
    ({"CXR_POLL_SECONDS": "0"}, "CXR_POLL_SECONDS"), ({"CXR_AE_TITLE": "A" * 17}, "CXR_AE"),
    ({"CXR_AE_TITLE": "   "}, "CXR_AE_TITLE"), ({"CXR_DESTINATIONS": "nohostport"}, "CXR_DEST"),
    ({"CXR_MODEL_BACKEND": "gpt"}, "CXR_MODEL_BACKEND"), ({"CXR_ALLOW_CPU": "maybe"}, "CXR_ALL"),
])
def test_nonsense_values_are_refused_naming_the_variable(env: dict[str, str],
                                                         names: str) -> None:
    with pytest.raises(SettingsError, match=names):
        load_settings(None, env)


def test_unknown_file_keys_are_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("prot = 1\n")
    with pytest.raises(SettingsError, match="unknown setting 'prot' .did you mean 'port'"):
        load_settings(cfg, {})


def test_only_settings_are_known_cxr_variables() -> None:
    """A test-only knob is not a setting: the product warns about any ``CXR_`` variable
    that names none (the fuzz budget is ``FUZZ_EXAMPLES``, outside that namespace)."""
    from worker.settings import unknown_variables

    found = unknown_variables({"CXR_PORT": "104", "CXR_FUZZ_EXAMPLES": "5",
                               "FUZZ_EXAMPLES": "5"})
    assert found == ["CXR_FUZZ_EXAMPLES is not a setting"]


@pytest.mark.integration  # a fresh interpreter
def test_reading_settings_loads_no_dicom_network_stack_numpy_or_pil() -> None:
    """``cxr-gateway settings`` and ``evaluate`` read settings only: importing them (and
    building the listener's limits and TLS values) must not load pynetdicom, PIL or
    numpy."""
    probe = ("import sys, worker.settings as s; cfg = s.load_settings(environ={}); "
             "cfg.limits, cfg.tls, cfg.backend_config(); "
             "print(sorted(m for m in ('pynetdicom', 'PIL', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.integration  # the CLI as a subprocess
def test_settings_command_shows_values_in_effect_and_their_sources(tmp_path: Path) -> None:
    cfg = tmp_path / "cxr.toml"
    cfg.write_text('ae_title = "FROMFILE"\n')
    out = cli("--config", str(cfg), "settings", "--data-dir", str(tmp_path / "d"),
              env={"CXR_PORT": "13112", "CXR_PROT": "4", "CXR_DATABASE_URL":
                   "postgresql+psycopg://cxr:s3cret@db/cxr", "CXR_API_TOKEN": "tok-123"})
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert re.search(r"^CXR_PORT\s+13112\s+environment CXR_PORT$", out.stdout, re.M), lines
    assert re.search(rf"^CXR_AE_TITLE\s+FROMFILE\s+file {re.escape(str(cfg))}$", out.stdout,
                     re.M)
    assert re.search(r"^CXR_HOST\s+127\.0\.0\.1\s+default$", out.stdout, re.M)
    assert "s3cret" not in out.stdout and "tok-123" not in out.stdout  # secrets masked
    assert "cxr:***@db" in out.stdout
    assert "warning: CXR_PROT is not a setting (did you mean CXR_PORT?)" in out.stderr
    assert "none yet" in out.stdout and not (tmp_path / "d").exists()  # nothing created


def one_error_line(out: subprocess.CompletedProcess[str], *words: str) -> str:
    assert out.returncode == 2, (out.returncode, out.stderr)
    errors = [ln for ln in out.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, out.stderr
    assert "Traceback" not in out.stderr and "ERROR" not in out.stderr, out.stderr
    for word in words:
        assert word in errors[0], errors[0]
    return errors[0]


@pytest.mark.integration  # the CLI as a subprocess
def test_startup_mistakes_end_in_one_error_line(tmp_path: Path) -> None:
    base = {"CXR_DATA_DIR": str(tmp_path / "d"), "CXR_API_PORT": "0"}
    one_error_line(cli("serve", env={**base, "CXR_PORT": "99999"}), "CXR_PORT", "65535")
    one_error_line(cli("serve", env={**base, "CXR_AE_TITLE": "X" * 17}), "CXR_AE_TITLE",
                   "16 characters")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    one_error_line(cli("serve", env={**base, "CXR_DATA_DIR": str(blocker / "sub")}),
                   "cannot write to the data folder", "CXR_DATA_DIR")
    one_error_line(cli("serve", env={**base, "CXR_DATABASE_URL":
                                     "postgresql+psycopg://cxr:pw@127.0.0.1:1/nope"}),
                   "cannot use the database", "CXR_DATABASE_URL")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        one_error_line(cli("serve", env={**base, "CXR_PORT": str(port)}), f"port {port}",
                       "is in use", "CXR_PORT")
        one_error_line(cli("serve", env={**base, "CXR_PORT": str(free_port()),
                                         "CXR_API_PORT": str(port)}), "HTTP port",
                       "CXR_API_PORT")
    one_error_line(cli("worker", env=base), "CXR_BROKER_URL")


@pytest.mark.integration  # the CLI as a subprocess
def test_read_commands_refuse_a_folder_without_a_database(tmp_path: Path) -> None:
    for args in (("jobs", "list"), ("jobs", "show", "1"), ("studies", "list"), ("status",)):
        one_error_line(cli(*args, "--data-dir", str(tmp_path / "empty")), "no gateway database")
        assert not (tmp_path / "empty").exists()
    out = cli("jobs", "list", cwd=tmp_path)  # no --data-dir: var/ here, not created either
    one_error_line(out, "no gateway database")
    assert not (tmp_path / "var").exists()


@pytest.mark.integration  # the CLI as a subprocess
def test_read_commands_refuse_a_database_an_older_serve_made(tmp_path: Path) -> None:
    """A database at an older schema (made by the previous release, not yet migrated by
    this one's serve): one line saying so, not a traceback about a missing table."""
    from alembic import command
    from alembic.config import Config

    data = tmp_path / "data"
    data.mkdir()
    cfg = Config()
    cfg.set_main_option("script_location", str(ROOT / "worker" / "store" / "migrations"))
    cfg.set_main_option("sqlalchemy.url", f"sqlite:///{data / 'gateway.db'}")
    command.upgrade(cfg, "0009")  # before the review tables
    for args in (("tokens", "list"), ("tokens", "add", "dr-a"), ("jobs", "list")):
        one_error_line(cli(*args, "--data-dir", str(data)), "schema is at revision 0009",
                       "cxr-gateway serve")


@pytest.mark.integration  # the CLI as a subprocess
def test_every_option_has_help() -> None:
    from worker.cli import build_parser

    parser = build_parser()
    missing = []
    for action in parser._subparsers._group_actions:  # type: ignore[union-attr]
        for name, sub in action.choices.items():  # type: ignore[union-attr]
            for opt in sub._actions:
                if opt.help is None and opt.dest != "help":
                    missing.append(f"{name} {opt.option_strings or opt.dest}")
    assert missing == []
    top = cli("--help").stdout
    for command in ("serve", "worker", "api", "demo", "run", "status", "jobs", "studies",
                    "settings", "health", "batch", "evaluate"):
        assert command in top


def test_readme_settings_table_is_current() -> None:
    assert settings_table() in (ROOT / "README.md").read_text()


def test_readme_links_stay_inside_the_repository() -> None:
    text = (ROOT / "README.md").read_text()
    assert "../" not in text
    for target in re.findall(r"\]\(([^)#]+)\)", text):
        if not target.startswith(("http://", "https://")):
            assert (ROOT / target).exists(), target
    for path in re.findall(r"`((?:docs|deploy|bench|tests|scripts)/[\w./-]+)`", text):
        assert (ROOT / path).exists(), path


def test_destination_kinds() -> None:
    from dicom_gateway.transfer.destinations import parse_destinations

    a, b, c = parse_destinations("PACS@10.0.0.5:104/comprehensive, reply:4242, "
                                 "https://pacs.example.org/dicom-web/")
    assert (a.kind, a.sr_class, str(a)) == ("dicom", "comprehensive",
                                            "PACS@10.0.0.5:104/comprehensive")
    assert (b.kind, b.port) == ("reply", 4242)
    assert b.resolved("ORTHANC", "127.0.0.1:51234") == Destination("ORTHANC", "127.0.0.1", 4242)
    assert (c.kind, c.url) == ("stow", "https://pacs.example.org/dicom-web")
    with pytest.raises(ValueError, match="reply:PORT"):
        parse_destinations("PACS@host")


def test_status_classification() -> None:
    from dicom_gateway.transfer.sender import _is_permanent

    assert [_is_permanent(s) for s in (0xA700, 0xA701, 0x0110, 0xA900, 0xC000, 0xC211,
                                       0x0122)] == [False, False, False, True, True, True, True]
