"""The serve process's periodic duties: named, run in turn, one failure keeps no other
from its turn (in this process: no port, no worker)."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import pytest

from worker.pipeline.reconciler import Publishers, Reconciler
from worker.runtime import configure
from worker.service import Duty, ServeProcess
from worker.settings import load_settings


def serve_process(tmp_path: Path) -> ServeProcess:
    settings = load_settings(None, {}, data_dir=tmp_path / "data", poll_seconds=0.01)
    process = ServeProcess(settings)
    process.rt = configure(settings)
    nothing = Publishers(prepare=lambda *_a: None, infer=lambda *_a: None,
                         report=lambda *_a: None)
    process.reconciler = Reconciler(process.rt.db, settings, nothing, lambda _q: 0)
    return process


def test_the_duties_are_named_in_the_order_they_run(tmp_path: Path) -> None:
    names = [duty.name for duty in serve_process(tmp_path).duties()]
    assert names == ["assemble quiet studies", "reconcile jobs with the database",
                     "supervise the in-process worker", "purge skipped studies"]


def test_a_failing_duty_is_logged_by_name_and_the_others_keep_running(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
        ) -> None:
    process = serve_process(tmp_path)
    ran: list[str] = []

    def broken() -> None:
        raise RuntimeError("database gone")

    monkeypatch.setattr(process, "duties", lambda: [
        Duty("first", lambda: ran.append("first")), Duty("broken", broken),
        Duty("last", lambda: ran.append("last"))])
    thread = threading.Thread(target=process._run_duties, daemon=True)
    with caplog.at_level(logging.ERROR, logger="worker.service"):
        thread.start()
        deadline = time.monotonic() + 30
        while ran.count("last") < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        process._stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive()
    assert ran.count("first") >= 2 and ran.count("last") >= 2
    assert any("'broken' failed" in r.getMessage() for r in caplog.records)
