"""An installation made by an earlier release keeps working under this code.

tests/upgrade/<release>/ holds, as text, what the release's own ``serve`` left behind
(tests/upgrade/make_fixtures.sh regenerates it): a database (SQLite in the data folder, or
PostgreSQL) with one job done, one failed and one prepared job waiting for a GPU worker when
the machine died, plus the data folder's spool, outbox, previews and embedded-broker files.
This code's ``serve`` on it loses nothing, finishes the waiting job, and leaves the schema at
this code's Alembic head (for a pure move: the same revision, nothing migrated)."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text

from tests.peers import BIN, ROOT, fresh_database

pytestmark = pytest.mark.integration  # runs serve, psql and the CLI as subprocesses

# afe337e: the release before worker/ was split into rooms; bf37dd6: the release before
# dicom_gateway/ was, and before addenda were delivered through ``deliveries`` (0011)
RELEASES = ("afe337e", "bf37dd6")
UPGRADES = ROOT / "tests" / "upgrade"
PLACEHOLDER = "@DATA_DIR@"
JOB_COLUMNS = "id, study_instance_uid, sop_instance_uid, version, state, reason, " \
              "sr_sop_instance_uid"


def restore_data_folder(release: str, flavour: str, data_dir: Path) -> None:
    shutil.copytree(UPGRADES / release / flavour / "data", data_dir)
    for path in data_dir.rglob("*"):
        if path.is_file() and path.suffix != ".dcm" and path.suffix != ".png":
            content = path.read_bytes()
            if PLACEHOLDER.encode() in content:
                path.write_bytes(content.replace(PLACEHOLDER.encode(), str(data_dir).encode()))


def dump_for(release: str, flavour: str, data_dir: Path) -> str:
    return (UPGRADES / release / flavour / "database.sql").read_text().replace(
        PLACEHOLDER, str(data_dir))


@pytest.fixture(params=[(r, f) for r in RELEASES for f in ("sqlite", "postgres")],
                ids=lambda p: "-".join(p))
def installation(request: pytest.FixtureRequest, tmp_path: Path
                 ) -> Iterator[tuple[Path, dict[str, str], str]]:
    """(data folder, serve's environment, database URL) of the release's installation."""
    release, flavour = request.param
    data_dir = tmp_path / "gateway"
    restore_data_folder(release, flavour, data_dir)
    if flavour == "sqlite":
        conn = sqlite3.connect(data_dir / "gateway.db")
        try:  # closed before serve starts: it switches the file to WAL
            conn.executescript(dump_for(release, "sqlite", data_dir))
        finally:
            conn.close()
        yield data_dir, {}, f"sqlite:///{data_dir / 'gateway.db'}"
        return
    url, drop = fresh_database()
    try:
        plain = url.replace("postgresql+psycopg://", "postgresql://")
        subprocess.run(["psql", "-q", "-v", "ON_ERROR_STOP=1", "-d", plain, "-f", "-"],
                       input=dump_for(release, "postgres", data_dir), text=True, check=True,
                       capture_output=True, timeout=120)
        yield data_dir, {"CXR_DATABASE_URL": url}, url
    finally:
        drop()


def snapshot(url: str) -> dict[str, Any]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            tables = inspect(conn).get_table_names()
            return {
                "jobs": {row[0]: tuple(row) for row in conn.execute(
                    text(f"SELECT {JOB_COLUMNS} FROM jobs ORDER BY id"))},
                "rows": {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()
                         for t in tables},
                "revision": conn.execute(text("SELECT version_num FROM alembic_version")
                                         ).scalar_one(),
            }
    finally:
        engine.dispose()


def wait_all_settled(url: str, timeout: float = 240.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        now = snapshot(url)
        states = {job[4] for job in now["jobs"].values()}
        if states <= {"done", "failed"} or time.monotonic() > deadline:
            return now
        time.sleep(0.3)


def job_show(job_id: int, env: dict[str, str]) -> dict[str, Any]:
    out = subprocess.run([str(BIN / "cxr-gateway"), "jobs", "show", str(job_id), "--json"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    return dict(json.loads(out.stdout))


def test_the_release_installation_keeps_working(serve_factory, installation) -> None:
    data_dir, env, url = installation
    head = ScriptDirectory(str(ROOT / "worker" / "store" / "migrations")).get_current_head()
    before = snapshot(url)
    by_state = {job[4]: job for job in before["jobs"].values()}
    assert sorted(by_state) == ["done", "failed", "prepared"], before["jobs"]
    assert by_state["failed"][5].startswith("conversion failed"), by_state["failed"]

    srv = serve_factory.new({"CXR_MODEL_BACKEND": "mock", "CXR_LISTENER_PROCESSES": "1",
                             "CXR_API_PORT": "0", "CXR_REQUEUE_SECONDS": "1", **env},
                            data_dir=data_dir).start()
    after = wait_all_settled(url)
    srv.stop()

    # nothing lost: every job row is still there; the done and failed ones unchanged
    assert sorted(after["jobs"]) == sorted(before["jobs"])
    for state in ("done", "failed"):
        assert after["jobs"][by_state[state][0]] == by_state[state]
    # the job that waited for a GPU finished, with its own SR
    waited = after["jobs"][by_state["prepared"][0]]
    assert waited[4] == "done" and waited[6], waited
    # no table lost rows (events, instances, studies ... only grow)
    for table, count in before["rows"].items():
        assert after["rows"].get(table, -1) >= count, (table, before["rows"], after["rows"])
    # the schema is at this code's head: for a pure move, the release's revision untouched
    assert after["revision"] == head
    if before["revision"] == head:
        assert after["rows"]["alembic_version"] == 1
    # 0011: the release's deliveries are its jobs' first SRs', still to the same places
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            documents = {r[0] for r in conn.execute(text("SELECT document FROM deliveries"))}
    finally:
        engine.dispose()
    assert documents <= {""}, documents

    cli_env = {**os.environ, "CXR_DATA_DIR": str(data_dir), **env}
    for job in (by_state["done"], waited):
        shown = job_show(job[0], cli_env)
        assert shown["state"] == "done" and shown["sr_sop_instance_uid"] == job[6], shown
        assert Path(shown["sr_path"]).is_file(), shown  # the SR is still in the outbox
