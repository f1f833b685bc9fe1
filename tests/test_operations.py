"""Operating the gateway: /metrics against the database, the API's auth and schema, and
the dashboard in a real headless Chromium (retry clicked, screenshot saved)."""

from __future__ import annotations

import json
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydicom.uid import JPEG2000Lossless
from sqlalchemy import func, select

from tests.dicom_factory import raw_c_store
from tests.hostile_corpus import _encapsulated, base, encode
from tests.peers import ROOT, Serve, StoreSCP
from tests.test_end_to_end import db_for
from worker.store.db import AssociationLog, Delivery, Instance, Job, JobEvent, Study

pytestmark = pytest.mark.integration
SCREENSHOT = Path("/tmp/cxr-dashboard.png")  # kept for people to look at; not committed


TOKEN = "test-token-1234-abcdefghijklmnopqr"


def busy_gateway(root: Path) -> tuple[Serve, StoreSCP]:
    """A gateway that has done two jobs, skipped a lateral study and failed a corrupt one."""
    pacs = StoreSCP(root)
    srv = Serve(root / "gateway", {"CXR_DESTINATIONS": pacs.destination,
                                   "CXR_MOCK_LABELS": "Edema,Support Devices",
                                   "CXR_API_TOKEN": TOKEN}).start()
    lateral = base(seed=3)
    lateral.ViewPosition = "LL"
    corrupt = _encapsulated(base(seed=4), b"\xff\x4f\xff\x51" + bytes(300), JPEG2000Lossless)
    for ds, ts in ((base(seed=1), "1.2.840.10008.1.2.1"), (base(seed=2), "1.2.840.10008.1.2.1"),
                   (lateral, "1.2.840.10008.1.2.1"), (corrupt, JPEG2000Lossless)):
        assert raw_c_store(srv.port, str(ds.SOPInstanceUID), encode(ds),
                           transfer_syntax=ts) == 0
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        with db_for(srv.data_dir).session() as s:
            states = sorted(s.scalars(select(Job.state)).all())
            open_studies = s.scalar(select(func.count()).select_from(Study).where(
                Study.assembled_at.is_(None)))
        if states == ["done", "done", "failed"] and not open_studies:
            break
        time.sleep(0.3)
    assert states == ["done", "done", "failed"]
    return srv, pacs


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Serve, str]]:
    """Shared by the tests that only read; the dashboard test, which retries a job, has
    its own (so no test's outcome depends on the order they run in)."""
    srv, pacs = busy_gateway(tmp_path_factory.mktemp("ops"))
    yield srv, TOKEN
    srv.stop()
    pacs.stop()


@pytest.fixture
def own_gateway(tmp_path: Path) -> Iterator[tuple[Serve, str]]:
    srv, pacs = busy_gateway(tmp_path)
    yield srv, TOKEN
    srv.stop()
    pacs.stop()


def get(srv: Serve, path: str, token: str | None = None, method: str = "GET"
        ) -> tuple[int, bytes]:
    req = urllib.request.Request(f"http://127.0.0.1:{srv.api_port}{path}", method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def scrape(srv: Serve) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    status, body = get(srv, "/metrics")  # no token: Prometheus scrapes it as it is
    assert status == 200
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def test_metrics_agree_with_the_database(gateway: tuple[Serve, str]) -> None:
    srv, _ = gateway
    m = scrape(srv)
    db = db_for(srv.data_dir)
    with db.session() as s:
        by_state = dict(s.execute(select(Job.state, func.count()).group_by(Job.state)).all())
        received = s.execute(select(Instance.calling_ae, Instance.admission, func.count())
                             .group_by(Instance.calling_ae, Instance.admission)).all()
        assocs = s.scalar(select(func.count()).select_from(AssociationLog).where(
            AssociationLog.calling_ae == "RAWSCU"))
        attempts = s.scalar(select(func.sum(Delivery.attempts))) or 0
        left_preparing = s.scalar(select(func.count()).select_from(JobEvent).where(
            JobEvent.state == "preparing"))  # each was followed by prepared or failed
        results = [json.loads(r) for r in s.scalars(select(Job.result)).all() if r]
    for state, n in by_state.items():
        assert m["cxr_jobs"][(("state", state),)] == n
    for ae, admission, n in received:
        assert m["cxr_instances_received_total"][(("calling_ae", ae),
                                                  ("outcome", admission))] == n
    assert sum(v for k, v in m["cxr_associations_total"].items()
               if ("calling_ae", "RAWSCU") in k) == assocs
    assert sum(m["cxr_delivery_attempts_total"].values()) == attempts == 2
    assert sum(m["cxr_delivery_failures_total"].values()) == 0
    assert m["cxr_stage_duration_seconds_count"][(("state", "preparing"),)] == left_preparing
    batches = {r["batch_id"] for r in results}
    assert m["cxr_gpu_batch_size_count"][()] == len(batches)
    assert m["cxr_gpu_batch_size_sum"][()] == sum(
        {r["batch_id"]: r["batch_size"] for r in results}.values())
    assert m["cxr_spool_free_bytes"][()] > 0
    assert ("queue", "cpu") in {k[0] for k in m["cxr_queue_depth"]}
    assert any(v == 1 for k, v in m["cxr_worker_up"].items() if ("kind", "serve") in k)
    # the Grafana dashboard asks only for metrics that exist
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "dashboards" /
                            "cxr-gateway.json").read_text())
    import re

    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    for name in set(re.findall(r"\bcxr_[a-z_]+", exprs)):
        assert name in m, name


def test_auth_openapi_and_the_json_api(gateway: tuple[Serve, str]) -> None:
    from openapi_spec_validator import validate

    srv, token = gateway
    for path in ("/api/jobs", "/api/overview", "/openapi.json", "/api/associations"):
        assert get(srv, path)[0] == 401
        assert get(srv, path, "wrong-token")[0] == 401
    assert get(srv, "/healthz")[0] == 200
    status, body = get(srv, "/readyz")
    ready = json.loads(body)
    assert status == 200 and ready["ready"], ready
    status, body = get(srv, "/openapi.json", token)
    assert status == 200
    schema = json.loads(body)
    validate(schema)
    assert {"/api/jobs", "/api/jobs/{job_id}", "/api/jobs/{job_id}/retry",
            "/api/studies/{study_uid}", "/api/associations"} <= set(schema["paths"])
    failed = json.loads(get(srv, "/api/jobs?state=failed", token)[1])
    assert [j["state"] for j in failed] == ["failed"] and "conversion" in failed[0]["reason"]
    assert len(json.loads(get(srv, "/api/jobs?calling_ae=RAWSCU", token)[1])) == 3
    assert json.loads(get(srv, "/api/jobs?calling_ae=NOBODY", token)[1]) == []
    assert json.loads(get(srv, "/api/jobs?since=2999-01-01", token)[1]) == []
    done = json.loads(get(srv, "/api/jobs?state=done", token)[1])[0]
    job = json.loads(get(srv, f"/api/jobs/{done['job_id']}", token)[1])
    assert [t["state"] for t in job["timeline"]][-1] == "done" and job["reasoning"]
    study = json.loads(get(srv, f"/api/studies/{done['study_instance_uid']}", token)[1])
    assert study["instances"][0]["admission"] == "admitted"
    skipped = json.loads(get(srv, "/api/studies?outcome=skipped", token)[1])
    assert len(skipped) == 1 and "lateral view" in skipped[0]["outcome"]
    assert get(srv, f"/api/jobs/{done['job_id']}/retry", token, "POST")[0] == 409
    assert get(srv, "/api/jobs/99999", token)[0] == 404


def chromium() -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if binary is None or driver is None:
        pytest.fail("Debian chromium and chromium-driver are not installed: run "
                    "scripts/bootstrap test")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1400,1600",
                 "--disable-dev-shm-usage"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(driver), options=options)


def dashboard_login(port: int, token: str) -> tuple[Any, str]:
    """A headless Chromium logged in to the dashboard on ``port`` with ``token`` (through
    the login form, as a person does); the browser and the base URL."""
    from selenium.webdriver.common.by import By

    browser = chromium()
    base_url = f"http://127.0.0.1:{port}"
    try:
        browser.get(base_url + "/")
        browser.find_element(By.NAME, "token").send_keys(token)
        browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    except Exception:
        browser.quit()
        raise
    return browser, base_url


def test_dashboard_in_chromium(own_gateway: tuple[Serve, str], tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    srv, token = own_gateway
    base_url = f"http://127.0.0.1:{srv.api_port}"
    browser = chromium()
    try:
        browser.get(base_url + "/")
        assert "/login" in browser.current_url  # no token, no dashboard
        browser.get(f"{base_url}/login?token={token}")  # a token in a URL opens nothing
        browser.get(base_url + "/")
        assert "/login" in browser.current_url
        field = browser.find_element(By.NAME, "token")
        field.send_keys(token)
        browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
        wait = WebDriverWait(browser, 120)
        wait.until(ec.text_to_be_present_in_element((By.ID, "count-done"), "2"))
        assert browser.find_element(By.CSS_SELECTOR, "#count-failed b").text == "1"
        skipped = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR,
                                                             "#skipped tr.skipped")))
        assert "lateral view" in skipped.text
        failure = browser.find_element(By.CSS_SELECTOR, "#failures tr.failure")
        assert "conversion failed" in failure.text
        preview = wait.until(ec.presence_of_element_located((By.ID, "preview")))
        wait.until(lambda b: b.execute_script(
            "return arguments[0].complete && arguments[0].naturalWidth", preview))
        assert browser.execute_script("return arguments[0].naturalWidth", preview) > 0
        assert "Edema" in browser.find_element(By.ID, "detail").text
        browser.save_screenshot(str(SCREENSHOT))
        failed_id = int(failure.get_attribute("data-id") or 0)
        failure.find_element(By.CSS_SELECTOR, "button.retry").click()
        deadline = time.monotonic() + 120
        seen = []
        while time.monotonic() < deadline:
            with db_for(srv.data_dir).session() as s:
                events = [e.detail for e in s.scalars(select(JobEvent).where(
                    JobEvent.job_id == failed_id)).all()]
            if "retried by operator" in events:
                break
            time.sleep(0.2)
            seen = events
        assert "retried by operator" in events, seen
        browser.save_screenshot(str(tmp_path / "after-retry.png"))
        # the same change without the session's CSRF token: refused, from a script ...
        status = browser.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            f"fetch('/api/jobs/{failed_id}/retry', {{method: 'POST', "
            "credentials: 'same-origin'}).then(r => done(r.status));")
        assert status == 403
        # ... and from a plain HTML form, which a page on another site could post
        browser.execute_script(
            "const f = document.createElement('form'); f.method = 'post';"
            f"f.action = '/api/jobs/{failed_id}/retry'; document.body.append(f); f.submit();")
        wait.until(lambda b: "CSRF token" in b.page_source)
        with db_for(srv.data_dir).session() as s:
            retried = [e.detail for e in s.scalars(select(JobEvent).where(
                JobEvent.job_id == failed_id)).all()].count("retried by operator")
        assert retried == 1  # only the dashboard's own button retried it
        # log out: the session ends, and the dashboard asks for the token again
        browser.get(base_url + "/")
        wait.until(ec.element_to_be_clickable((By.ID, "logout"))).click()
        wait.until(lambda b: "/login" in b.current_url)
        browser.get(base_url + "/")
        assert "/login" in browser.current_url
    finally:
        browser.quit()
    assert SCREENSHOT.stat().st_size > 10_000
