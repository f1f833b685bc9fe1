"""Delivery: retries on the database's schedule, and SIGTERM that never hangs on a peer."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.peers import BIN, BlackHole, StoreSCP, free_port
from tests.test_end_to_end import assert_stored, db_for, wait_job
from worker.db import Delivery, Job

pytestmark = pytest.mark.integration


def jobs_show(data_dir: Path, job_id: int) -> dict[str, object]:
    out = subprocess.run([str(BIN / "cxr-gateway"), "jobs", "show", str(job_id), "--json",
                          "--data-dir", str(data_dir)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    shown: dict[str, object] = json.loads(out.stdout)
    return shown


def test_a_pacs_down_for_ten_seconds_gets_the_sr_on_the_backoff(
        serve_factory, rg1: Path, tmp_path: Path) -> None:
    port = free_port()  # nothing listens here yet: the PACS is down
    env = {"CXR_DESTINATIONS": f"DESTPACS@127.0.0.1:{port}", "CXR_RETRY_BACKOFF_SECONDS": "2",
           "CXR_RETRY_MAX_BACKOFF_SECONDS": "8"}
    srv = serve_factory.new(env).start()
    assert_stored(srv.storescu(rg1, extra=("-v",)))
    deadline = time.monotonic() + 60
    first_failure = None
    while time.monotonic() < deadline and first_failure is None:
        with db_for(srv.data_dir).session() as s:
            d = s.scalar(select(Delivery))
            if d is not None and d.attempts >= 1:
                first_failure = time.monotonic()
                job_id = d.job_id
        time.sleep(0.2)
    assert first_failure is not None
    shown = jobs_show(srv.data_dir, job_id)
    (delivery,) = shown["deliveries"]  # type: ignore[misc]
    assert delivery["state"] == "retrying" and delivery["next_attempt_at"]
    assert "association" in delivery["detail"] and shown["state"] == "delivering"
    time.sleep(max(0.0, 10 - (time.monotonic() - first_failure)))
    pacs = StoreSCP(tmp_path, port=port)  # back up after ten seconds
    up = time.monotonic()
    try:
        pacs.wait_files(1, timeout=30)
        waited = time.monotonic() - up
        job = wait_job(srv.data_dir, shown["study_instance_uid"], ("done",))  # type: ignore
        assert waited < 8 + 3, f"SR arrived {waited:.1f} s after the PACS came back"
        assert pacs.delivered_uids() == [job.sr_sop_instance_uid]
        with db_for(srv.data_dir).session() as s:
            d = s.scalar(select(Delivery))
            assert d is not None and d.state == "done" and d.attempts >= 3
    finally:
        pacs.stop()


def test_sigterm_while_sending_to_a_hung_pacs_exits_promptly(
        serve_factory, rg1: Path, tmp_path: Path) -> None:
    hole = BlackHole()
    srv = serve_factory.new({"CXR_DESTINATIONS": f"DESTPACS@127.0.0.1:{hole.port}"}).start()
    assert_stored(srv.storescu(rg1, extra=("-v",)))
    deadline = time.monotonic() + 60
    held = None
    while time.monotonic() < deadline:
        with db_for(srv.data_dir).session() as s:
            held = s.scalar(select(Job).where(Job.state == "delivering", Job.holder != ""))
        if held is not None and hole.connections:
            break
        time.sleep(0.1)
    assert held is not None and hole.connections, "the SR was never in flight"
    assert srv.proc is not None
    start = time.monotonic()
    srv.proc.send_signal(signal.SIGTERM)
    srv.proc.wait(timeout=30)
    assert time.monotonic() - start < 3 + 2  # the grace period, plus a margin
    # the in-flight delivery is taken over by the next start, to a PACS that now answers
    hole.close()
    pacs = StoreSCP(tmp_path, port=hole.port)
    try:
        srv.start()
        pacs.wait_files(1, timeout=60)
        job = wait_job(srv.data_dir, held.study_instance_uid, ("done",))
        assert pacs.delivered_uids() == [job.sr_sop_instance_uid]
        assert job.attempts == 1  # one takeover: its holder went away mid-delivery
    finally:
        pacs.stop()
