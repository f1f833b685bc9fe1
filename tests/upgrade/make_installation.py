"""Build an installation with a release's own code, as a site running it would have: one job
done, one failed, one waiting for the GPU queue when the machine died; then save it as text.

Run by tests/upgrade/make_fixtures.sh (which extracts the release); it never imports the
product itself, so the release under ``--release`` is what runs:

    python tests/upgrade/make_installation.py --release /tmp/rel --out DIR [--database-url URL]

Writes ``DIR/database.sql`` (SQLite: ``iterdump``; PostgreSQL: ``pg_dump --no-owner``) and
``DIR/data/`` (the data folder without its database), with the data folder's path replaced
by ``@DATA_DIR@`` so that tests/test_upgrade.py can restore it anywhere.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from pydicom import dcmread
from pydicom.uid import generate_uid
from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.dicom_factory import make_cr, save  # noqa: E402

PLACEHOLDER = "@DATA_DIR@"
DATABASE_FILES = ("gateway.db", "gateway.db-wal", "gateway.db-shm")
# pg_dump lines an older psql or server refuses (newer pg_dump releases write them); the
# restore needs none of them
NOT_PORTABLE = ("\\restrict", "\\unrestrict", "SET transaction_timeout")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ReleaseServe:
    """The release's ``serve`` in its own process group, so a SIGKILL ends all of it."""

    def __init__(self, release: Path, data_dir: Path, database_url: str) -> None:
        self.release, self.data_dir, self.port = release, data_dir, free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("CXR_")}
        self.env = {**env, "PYTHONPATH": str(release), "CXR_DATA_DIR": str(data_dir),
                    "CXR_PORT": str(self.port), "CXR_API_PORT": "0",
                    "CXR_MODEL_BACKEND": "mock", "CXR_STUDY_QUIET_SECONDS": "1",
                    "CXR_POLL_SECONDS": "0.2", "CXR_LISTENER_PROCESSES": "1"}
        if database_url:
            self.env["CXR_DATABASE_URL"] = database_url
        self.log = data_dir.parent / "serve.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *extra: str) -> None:
        seen = self.log.read_text().count("cxr-gateway serving") if self.log.exists() else 0
        with self.log.open("ab") as fh:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "worker.cli", "serve", *extra], cwd=self.release,
                env=self.env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 180
        while self.log.read_text().count("cxr-gateway serving") == seen:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the release's serve did not start:\n{self.log.read_text()}")
            time.sleep(0.1)

    def send(self, path: Path) -> None:
        subprocess.run(["storescu", "-aec", "CXRGATEWAY", "127.0.0.1", str(self.port),
                        str(path)], check=True, capture_output=True, timeout=120)

    def terminate(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=120)

    def kill(self) -> None:
        """SIGKILL the whole group at once, as a machine crash would end it."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)


def wait_state(url: str, study_uid: str, state: str, timeout: float = 180.0) -> None:
    engine = create_engine(url)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                found = conn.execute(text("SELECT state FROM jobs WHERE study_instance_uid = :u"),
                                     {"u": study_uid}).scalar()
            if found == state:
                return
            time.sleep(0.2)
    finally:
        engine.dispose()
    raise SystemExit(f"job of {study_uid} never reached {state} (last: {found})")


def images(folder: Path) -> dict[str, Path]:
    """Three small generated chest images: two smooth ones that convert (and compress well),
    one blank, whose conversion fails ('the decoded image is blank')."""
    made = {}
    ramp = np.add.outer(np.arange(64), np.arange(64))
    for name, step in (("done", 10), ("failed", 0), ("queued", 20)):
        ds = make_cr(study_uid=generate_uid(), size=64)
        ds.PixelData = (ramp * step + 100).astype(np.uint16).tobytes()
        made[name] = save(ds, folder / f"{name}.dcm")
    return made


def build(release: Path, out: Path, database_url: str) -> None:
    scratch = Path(tempfile.mkdtemp(prefix="cxr-upgrade-"))
    data_dir = scratch / "data"
    data_dir.mkdir()
    url = database_url or f"sqlite:///{data_dir / 'gateway.db'}"
    sent = images(scratch)
    uids = {name: str(dcmread(path, stop_before_pixels=True).StudyInstanceUID)
            for name, path in sent.items()}
    serve = ReleaseServe(release, data_dir, database_url)
    serve.start()
    serve.send(sent["done"])
    wait_state(url, uids["done"], "done")
    serve.send(sent["failed"])
    wait_state(url, uids["failed"], "failed")
    serve.terminate()
    serve.start("--worker-queues", "cpu")  # no GPU worker: the third job waits, prepared
    serve.send(sent["queued"])
    wait_state(url, uids["queued"], "prepared")
    time.sleep(1)  # its cxr.infer message reaches the broker's gpu queue
    serve.kill()
    save_installation(data_dir, url, database_url, out)
    shutil.rmtree(scratch)


def save_installation(data_dir: Path, url: str, database_url: str, out: Path) -> None:
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    if database_url:
        plain = database_url.replace("postgresql+psycopg://", "postgresql://")
        dump = subprocess.run(["pg_dump", "--no-owner", "--no-privileges", plain],
                              check=True, capture_output=True, text=True).stdout
        dump = "".join(line for line in dump.splitlines(keepends=True)
                       if not line.startswith(NOT_PORTABLE))
    else:
        with contextlib.closing(sqlite3.connect(data_dir / "gateway.db")) as conn:
            dump = "\n".join(conn.iterdump()) + "\n"
    (out / "database.sql").write_text(dump.replace(str(data_dir), PLACEHOLDER))
    shutil.copytree(data_dir, out / "data",
                    ignore=shutil.ignore_patterns(*DATABASE_FILES))
    for path in (out / "data").rglob("*"):
        if path.is_file() and path.suffix in (".json", ".txt", ".msg", ""):
            content = path.read_bytes()
            if str(data_dir).encode() in content:
                path.write_bytes(content.replace(str(data_dir).encode(), PLACEHOLDER.encode()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--release", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--database-url", default="",
                        help="an empty PostgreSQL database; without it, SQLite")
    args = parser.parse_args()
    build(args.release.resolve(), args.out.resolve(), args.database_url)


if __name__ == "__main__":
    main()
