"""A reader study in a real headless Chromium over a real gateway (issue 34): ``serve`` on
the ``openai`` backend against the vLLM stand-in, three chest CRs sent with dcmtk's
storescu, two readers with named tokens.  Each reads every case under the three conditions
in the order their schedule says, with the editor pre-filled as the condition says and the
questionnaire enforced; the reader's own session gets 403 for a case's output before the
earlier read is done and 200 after; a reader who closes the browser mid-study comes back
to the same place.  Screenshots of the page under each condition go to /tmp (not kept in
the repository)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid
from sqlalchemy import select

from tests.dicom_factory import make_cr, save
from tests.peers import BIN, backend_env, wait_until
from tests.test_end_to_end import db_for
from tests.test_operations import dashboard_login
from worker.readers.reading import structured_report
from worker.store import reader_design as design
from worker.store.db import Instance, Job
from worker.store.reader_studies import ReaderAnswer, ReaderCase, ReaderRead

pytestmark = pytest.mark.integration

SIDE = 600  # pixels: over the model's input budget (as RG1 is), so full resolution shows
SHOTS = Path("/tmp")


def _cli(srv: Any, *args: str) -> str:
    done = subprocess.run([str(BIN / "cxr-gateway"), *args, "--data-dir", str(srv.data_dir)],
                          capture_output=True, text=True, timeout=120, env=srv.env)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _fetch_status(browser: Any, path: str, body: dict[str, Any] | None = None) -> int:
    """What the reader's own session gets for ``path`` (the page's cookie and CSRF)."""
    return int(browser.execute_async_script("""
        const [path, body, done] = arguments;
        const csrf = (document.cookie.match(/(?:^|; )cxr_csrf=([^;]*)/) || [])[1] || "";
        const options = body === null ? {} : {method: "POST", body: JSON.stringify(body),
            headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf}};
        fetch(path, {credentials: "same-origin", ...options}).then(r => done(r.status));
    """, path, body))


class Reading:
    """One reader's browser on the reading page, and the record it is checked against."""

    def __init__(self, srv: Any, token: str, reader: str) -> None:
        from selenium.webdriver.support.ui import WebDriverWait

        self.srv, self.token, self.reader = srv, token, reader
        self.browser, self.base = dashboard_login(srv.api_port, token)
        self.browser.get(self.base + "/read/pilot")
        self.wait = WebDriverWait(self.browser, 120)

    def find(self, css: str) -> Any:
        from selenium.webdriver.common.by import By

        return self.browser.find_element(By.CSS_SELECTOR, css)

    def at(self, position: int) -> None:
        self.wait.until(lambda b: self.find("#progress").text.startswith(
            f"read {position} of"))

    def close(self) -> None:
        self.browser.quit()


def _schedule(srv: Any, reader: str) -> list[tuple[int, str, int]]:
    """(case number, condition, job) in the reader's recorded order."""
    with db_for(srv.data_dir).session() as s:
        rows = s.execute(select(ReaderCase.number, ReaderRead.condition, ReaderRead.job_id)
                         .join(ReaderCase, ReaderCase.id == ReaderRead.case_id)
                         .where(ReaderRead.reader == reader)
                         .order_by(ReaderRead.position)).all()
    return [(int(n), str(c), int(j)) for n, c, j in rows]


def _structured_report(srv: Any, job: int) -> str:
    with db_for(srv.data_dir).session() as s:
        return structured_report(json.loads(s.get(Job, job).result))


def _columns(srv: Any, job: int) -> int:
    """The width of the case's source image, as stored."""
    with db_for(srv.data_dir).session() as s:
        uid = s.get(Job, job).sop_instance_uid
        path = s.scalar(select(Instance.path).where(Instance.sop_instance_uid == uid))
    return int(dcmread(path, stop_before_pixels=True).Columns)


def _answer(page: Reading, position: int) -> None:
    """The questionnaire: incomplete is refused by the page and by the server; then all."""
    from selenium.webdriver.common.by import By

    page.wait.until(lambda b: page.find("#questionnaire").is_displayed())
    items = page.browser.find_elements(By.CSS_SELECTOR, "#items .item")
    codes = [i.get_attribute("id").removeprefix("item-") for i in items]
    for code in codes[:-1]:
        page.find(f"#answer-{code}-4").click()
    assert not page.find("#submit-answers").is_enabled()
    assert _fetch_status(page.browser, "/api/readers/pilot/answers", {
        "position": position, "answers": {c: 4 for c in codes[:-1]}}) == 422
    page.find(f"#answer-{codes[-1]}-5").click()
    assert page.find("#submit-answers").is_enabled()
    page.find("#submit-answers").click()


LOADED = "const i = document.getElementById('image'); return i.complete && i.naturalWidth;"


def _window_and_zoom(page: Reading, width: int) -> None:
    """A narrower window, rendered by the gateway, and a zoom, done by the page."""
    page.browser.execute_script("""
        const c = document.getElementById('window-center'), w = document.getElementById(
            'window-width');
        w.value = w.value / 2; c.value = Number(c.value) * 0.9;
        c.dispatchEvent(new Event('input')); w.dispatchEvent(new Event('input'));""")
    page.wait.until(lambda b: "center=" in b.find_element(
        "css selector", "#image").get_attribute("src") and b.execute_script(LOADED) == width)
    before = page.find("#image").get_attribute("style")
    page.find("#zoom-in").click()
    assert page.find("#image").get_attribute("style") != before


def _read_one(page: Reading, position: int, planned: tuple[int, str, int],
              reports: dict[int, str], shots: set[str]) -> None:
    """Read the case at ``position`` as the page shows it, checking what it shows."""
    case, condition, job = planned
    page.at(position)
    assert page.find("#case").text == str(case)
    assert page.find("#condition").get_attribute("data-condition") == condition
    editor = page.find("#report-editor")
    status = _fetch_status(page.browser, f"/api/jobs/{job}")
    assert status == (200 if condition == design.FULL else 403), (position, condition)
    if condition == design.NO_AI:
        assert editor.get_attribute("value") == "FINDINGS:\n\nIMPRESSION:\n\n"
        assert not page.browser.find_elements("css selector", "#labels")
    elif condition == design.LABELS:
        assert editor.get_attribute("value") == reports[case]  # their own, to revise
        assert not page.browser.find_elements("css selector", "#reasoning")
    else:
        assert editor.get_attribute("value") == "FINDINGS:\n\nIMPRESSION:\n\n"
        page.find("#copy-report").click()
        assert editor.get_attribute("value") == _structured_report(page.srv, job)
        assert page.find("#reasoning").text
    width = _columns(page.srv, job)
    page.wait.until(lambda b: b.execute_script(LOADED) == width)  # the source, full size
    if width > SIDE and page.reader == "dr-a":  # RG1, the real radiograph: window and zoom
        _window_and_zoom(page, width)
        shots.add(condition)
        page.browser.save_screenshot(str(SHOTS / f"reading_{condition}.png"))
    editor.send_keys(f"\n{page.reader} {condition} case {case}")
    if condition == design.NO_AI:
        reports[case] = editor.get_attribute("value")
    page.find("#submit-report").click()


def _run_reader(srv: Any, token: str, reader: str, stop_at: int | None = None) -> None:
    """Read through the schedule; with ``stop_at``, close the browser once that position's
    report is in (mid-questionnaire) and come back in a new one."""
    plan = _schedule(srv, reader)
    page = Reading(srv, token, reader)
    reports: dict[int, str] = {}
    shots: set[str] = set()
    try:
        for position, planned in enumerate(plan, 1):
            _read_one(page, position, planned, reports, shots)
            if planned[1] != design.NO_AI:
                if position == stop_at:
                    page.close()
                    page = Reading(srv, token, reader)  # a new browser, a new login
                    page.at(position)  # the same place: its questionnaire
                _answer(page, position)
            if planned[1] == design.LABELS:  # that case's full output is open to them now
                page.at(position + 1)
                assert _fetch_status(page.browser, f"/api/jobs/{planned[2]}") == 200
        page.wait.until(lambda b: page.find("#finished").is_displayed())
    finally:
        page.close()


def test_two_readers_three_cases_three_conditions_in_chromium(serve_factory: Any,
                                                              vllm_standin: Any, rg1: Path,
                                                              tmp_path: Path) -> None:
    srv = serve_factory.new(backend_env("openai", standin_url=vllm_standin.url)).start()
    files = [rg1, *(save(make_cr(generate_uid(), size=SIDE, seed=40 + i),
                         tmp_path / f"cr{i}.dcm") for i in range(2))]
    stored = srv.storescu(*files)
    assert stored.returncode == 0, stored.stderr
    db = db_for(srv.data_dir)

    def done() -> list[str] | None:
        with db.session() as s:
            rows = s.scalars(select(Job).where(Job.state == "done")).all()
            return [j.study_instance_uid for j in rows] if len(rows) == 3 else None

    uids = wait_until(done, "three studies done on the openai backend", timeout=300)
    tokens = {r: _cli(srv, "tokens", "add", r).strip() for r in ("dr-a", "dr-b")}
    (tmp_path / "cases.txt").write_text("\n".join(uids) + "\n")
    made = _cli(srv, "readers", "create", "pilot", "--cases", str(tmp_path / "cases.txt"),
                "--readers", "dr-a,dr-b", "--seed", "7")
    assert "3 cases" in made and "MOCK" not in made
    _run_reader(srv, tokens["dr-a"], "dr-a", stop_at=4)
    _run_reader(srv, tokens["dr-b"], "dr-b")
    with db.session() as s:
        reads = s.scalars(select(ReaderRead).order_by(ReaderRead.reader,
                                                      ReaderRead.position)).all()
        answers = s.scalars(select(ReaderAnswer)).all()
        assert all(r.done_at is not None and r.reported_at >= r.shown_at for r in reads)
        assert len(reads) == 18 and len(answers) == 2 * 3 * (6 + 10)
        assert all(f"{r.reader} {r.condition} case" in r.report for r in reads)
    status = _cli(srv, "readers", "status", "pilot")
    assert "9 / 9" in status and "finished" in status
    _cli(srv, "readers", "summary", "pilot", "-o", str(tmp_path / "summary"))
    summary = json.loads((tmp_path / "summary" / "summary.json").read_text())
    assert summary["reads_done"] == 18
    assert {(r["item"], r["condition"]): r["n"] for r in summary["items"]}[("A1", "full")] == 6
    for condition in design.CONDITIONS:
        assert (SHOTS / f"reading_{condition}.png").stat().st_size > 10_000
    operator = (srv.data_dir / "api-token").read_text().strip()
    browser, _ = dashboard_login(srv.api_port, operator)
    try:  # the operator's dashboard: the study's progress and its summary
        from selenium.webdriver.support.ui import WebDriverWait

        WebDriverWait(browser, 120).until(lambda b: "full / no-AI report time" in b.find_element(
            "css selector", "#reader-studies").text)
        text = browser.find_element("css selector", "#reader-studies").text
        assert "dr-a 9 / 9, dr-b 9 / 9" in text and "A1" in text
        browser.execute_script("document.getElementById('reader-studies').scrollIntoView()")
        browser.save_screenshot(str(SHOTS / "reading_dashboard.png"))
    finally:
        browser.quit()
