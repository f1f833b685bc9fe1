"""The embedded default keeps an engine full, driven as a user drives it.

``serve`` alone (embedded broker, SQLite, its one in-process worker taking every queue)
with ``CXR_MODEL_BACKEND=openai`` against the vLLM stand-in as its own process, studies sent
by dcmtk's ``storescu``.  Before the engine feeder, the ``cxr.infer`` task held serve's only
worker until nothing it held was in flight, so no other study was prepared meanwhile and
the engine saw one study at a time.  The stand-in holds every admitted sequence here, so
the test sees how many studies serve put in flight at once, with no timing involved.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.uid import generate_uid
from sqlalchemy import select

from tests.dicom_factory import make_cr
from tests.peers import Serve, backend_env, wait_until
from tests.test_operations import dashboard_login
from tests.vllm_standin import StandinProcess, start_subprocess
from worker.settings import load_settings
from worker.store import engine_windows
from worker.store.db import Database, Job, WorkerProcess

pytestmark = pytest.mark.integration  # serve, the stand-in and dcmtk as processes
TOKEN = "engine-serve-token-0123456789abcdef"
STUDIES = 6


@pytest.fixture
def standin() -> Iterator[StandinProcess]:
    server = start_subprocess("--capacity", "16", "--scheduling-policy", "priority")
    yield server
    server.stop()


def db_for(data_dir: Path) -> Database:
    return Database(load_settings(None, {}, data_dir=data_dir).effective_database_url)


def test_serve_alone_puts_every_waiting_study_in_flight_and_shows_its_window(
        tmp_path: Path, standin: StandinProcess) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    srv = Serve(tmp_path / "gateway", {**backend_env("openai", standin.url),
                                       "CXR_API_TOKEN": TOKEN}).start()
    try:
        files = []
        for i in range(STUDIES):
            path = tmp_path / f"study-{i}.dcm"
            make_cr(generate_uid(), size=64, seed=i).save_as(path, enforce_file_format=True)
            files.append(path)
        standin.hold()
        assert srv.storescu(*files).returncode == 0
        # every study prepared and sent while the others are in flight: serve's one
        # worker was never held by the studies it had already sent
        wait_until(lambda: standin.state()["running"] == STUDIES,
                   f"{STUDIES} studies generating at once")
        db = db_for(srv.data_dir)
        with db.session() as s:
            (serve_name,) = s.scalars(select(WorkerProcess.name).where(
                WorkerProcess.kind == "serve", WorkerProcess.stopped_at.is_(None))).all()
        # while they are held: serve's window is recorded, steered by the engine's gauges,
        # and the dashboard shows it
        wait_until(lambda: (f := _figures(db).get(serve_name)) is not None and
                   f.steered_by == "engine metrics" and f.in_flight == STUDIES,
                   "serve's window recorded with every study in flight")
        browser, _ = dashboard_login(srv.api_port, TOKEN)
        try:
            row = WebDriverWait(browser, 120).until(
                lambda b: b.find_element(By.CSS_SELECTOR, "#engines tr.engine"))
            assert serve_name in row.text and "engine metrics" in row.text
            assert row.find_element(By.CSS_SELECTOR, "td.in-flight").text == str(STUDIES)
            assert int(row.find_element(By.CSS_SELECTOR, "td.window").text) >= STUDIES
        finally:
            browser.quit()
        standin.release_held()
        wait_until(lambda: _states(db) == ["done"] * STUDIES, "every study done")
        records = standin.requests
        assert {r.priority for r in records} == {0}  # live studies: the highest priority
        assert sorted(r.turn for r in records) == ["findings"] * STUDIES + ["report"] * STUDIES
    finally:
        srv.stop()


def _states(db: Database) -> list[str]:
    with db.session() as s:
        return sorted(s.scalars(select(Job.state)).all())


def _figures(db: Database) -> dict[str, engine_windows.Figures]:
    with db.session() as s:
        return engine_windows.live(s, 60.0)

