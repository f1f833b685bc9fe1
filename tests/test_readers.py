"""Reader studies (issue 34), without servers: the schedule rule, the figures checked by
hand, the blinding every API route keeps, the reading API's flow, the full-resolution
display chain and the ``readers`` commands.  The headless-Chromium run over a real gateway
is ``tests/test_readers_browser.py``."""

from __future__ import annotations

import csv
import io
import json
import math
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select

from tests.dicom_factory import make_cr
from tests.test_review import bearer
from worker.cli import main
from worker.ops.api import create_app
from worker.readers import figures, summary
from worker.runtime import Runtime, configure
from worker.settings import load_settings
from worker.store import reader_design as design
from worker.store import reader_studies, tokens
from worker.store.db import Instance, Job, now

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

TOKEN = "operator-token-reader-study-0034-abcdef"
REPORT_TEXT = "FINDINGS: Small left effusion.\nIMPRESSION: Left pleural effusion."


# -- the schedule ------------------------------------------------------------------------

@pytest.mark.parametrize("cases", [2, 3, 7, 40])
def test_each_schedule_keeps_the_papers_order_and_never_a_case_twice_in_a_row(cases: int
                                                                            ) -> None:
    plan = design.schedule(cases, ["dr-a", "dr-b", "dr-c"], seed=11)
    for slots in plan.values():
        assert len(slots) == 3 * cases
        assert design.schedule_problems(slots, cases) == []
        assert [c for _, c in slots] == [design.NO_AI] * cases + [design.LABELS] * cases + [
            design.FULL] * cases
    assert design.schedule(cases, ["dr-a", "dr-b", "dr-c"], seed=11) == plan  # the same seed
    if cases > 3:
        assert design.schedule(cases, ["dr-a"], seed=12)["dr-a"] != plan["dr-a"]
        assert plan["dr-a"] != plan["dr-b"]  # each reader an order of their own


def test_the_rule_check_finds_each_kind_of_break() -> None:
    assert design.schedule_problems([(1, design.NO_AI), (1, design.LABELS),
                                     (2, design.NO_AI), (2, design.LABELS), (1, design.FULL),
                                     (2, design.FULL)], 2) == [
        "case 1 twice in a row at positions 1 and 2", "case 2 twice in a row at positions 3 "
        "and 4"]
    assert "case 1 reads ['labels', 'no_ai', 'full']" in design.schedule_problems(
        [(1, design.LABELS), (2, design.NO_AI), (1, design.NO_AI), (2, design.LABELS),
         (1, design.FULL), (2, design.FULL)], 2)[0]
    with pytest.raises(design.DesignError, match="at least 2 cases"):
        design.schedule(1, ["dr-a"], 0)


def test_answers_must_be_complete_and_on_the_scale() -> None:
    full = {i.code: 4 for i in design.items_for(design.FULL)}
    assert design.check_answers(design.FULL, full) == full
    assert [i.code for i in design.items_for(design.LABELS)] == ["B1", "B2", "C1", "C2",
                                                                  "C3", "C4"]
    assert design.items_for(design.NO_AI) == ()
    with pytest.raises(design.DesignError, match="missing A4"):
        design.check_answers(design.FULL, {k: v for k, v in full.items() if k != "A4"})
    with pytest.raises(design.DesignError, match="1 .strongly disagree. to 5"):
        design.check_answers(design.FULL, {**full, "C2": 6})
    with pytest.raises(design.DesignError, match="not asked under Labels only: A1"):
        design.check_answers(design.LABELS, {**full})


# -- the figures, by hand ----------------------------------------------------------------

def _read(reader: str, case: int, condition: str, seconds: float, reference: str) -> dict[
        str, Any]:
    return {"reader": reader, "case": case, "condition": condition, "report_seconds": seconds,
            "active_seconds": seconds / 2, "reference": reference, "done": True}


def _recorded() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """2 readers, 3 cases (1 normal, 2 abnormal): times in seconds, a few answers."""
    times = {  # (reader, case): (no AI, labels, full)
        ("dr-a", 1): (300, 240, 120), ("dr-a", 2): (360, 300, 180), ("dr-a", 3): (60, 60, 60),
        ("dr-b", 1): (240, 240, 120), ("dr-b", 2): (420, 360, 120), ("dr-b", 3): (90, 60, 120),
    }
    ref = {1: "abnormal", 2: "abnormal", 3: "normal"}
    reads = [_read(r, c, cond, t[i], ref[c]) for (r, c), t in times.items()
             for i, cond in enumerate(design.CONDITIONS)]
    reads.append({**_read("dr-b", 3, design.FULL, 999, "normal"), "done": False})  # not done
    answers = [{"item": "A1", "condition": design.FULL, "value": v} for v in (5, 4, 4, 3)]
    answers += [{"item": "C1", "condition": design.LABELS, "value": v} for v in (2, 4)]
    return reads, answers


def test_item_means_deviations_and_counts_by_hand() -> None:
    reads, answers = _recorded()
    items = {(r["item"], r["condition"]): r for r in summary.item_stats(answers, reads)}
    a1 = items[("A1", design.FULL)]
    assert (a1["mean"], a1["n"], a1["paper"]) == (4.0, 4, 4.5)
    assert a1["sd"] == pytest.approx(math.sqrt((1 + 0 + 0 + 1) / 3), abs=1e-4)
    assert (items[("C1", design.LABELS)]["mean"], items[("C1", design.LABELS)]["sd"]) == (
        3.0, pytest.approx(math.sqrt(2), abs=1e-4))
    assert items[("A2", design.FULL)]["n"] == 0 and items[("A2", design.FULL)]["mean"] is None
    # B3, calculated: 100 * (1 - t / t_no_ai) per reader and case, the unfinished read left out
    saved = [100 * (1 - f / n) for n, f in ((300, 120), (360, 180), (60, 60), (240, 120),
                                            (420, 120), (90, 120))]
    b3 = items[("B3", design.FULL)]
    assert b3["n"] == 6 and b3["mean"] == pytest.approx(sum(saved) / 6, abs=1e-3)


def test_report_times_ratio_interval_and_wilcoxon_by_hand() -> None:
    reads, _ = _recorded()
    times = {(r["group"], r["condition"]): r for r in summary.time_stats(reads)}
    abnormal_no_ai = times[("abnormal", design.NO_AI)]
    assert abnormal_no_ai["n"] == 4
    assert abnormal_no_ai["mean"] == pytest.approx((300 + 360 + 240 + 420) / 4 / 60, abs=1e-4)
    assert abnormal_no_ai["paper_minutes"] == 5.5
    assert times[("normal", design.FULL)]["n"] == 2  # the unfinished read is not counted
    ratios = {r["group"]: r for r in summary.ratios(reads, resamples=500, seed=3)}
    ab = ratios["abnormal"]
    assert ab["ratio"] == pytest.approx((120 + 180 + 120 + 120) / (300 + 360 + 240 + 420))
    # two abnormal cases: every resample is one of {1,1}, {1,2}, {2,2}; case 1's own ratio
    # is 240/540, case 2's 300/780, so the interval lies between them
    lo, hi = sorted((240 / 540, 300 / 780))
    assert lo - 1e-9 <= ab["ci_low"] <= ab["ratio"] <= ab["ci_high"] <= hi + 1e-9
    assert summary.ratios(reads, resamples=500, seed=3) == list(ratios.values())  # seeded
    # Wilcoxon over all 3 cases: per-case mean times (no AI, full) = (270, 120), (390, 150),
    # (75, 90); differences 150, 240, -15: ranks 2, 3, 1; W+ = 5, W- = 1; statistic min = 1
    test = ratios["all"]["wilcoxon"]
    assert (test["statistic"], test["cases"]) == (1.0, 3)
    assert test["p_value"] == pytest.approx(0.5)  # exact two-sided: 2 * 2 / 8
    same = [_read("dr-a", c, cond, 60, "normal") for c in (1, 2) for cond in design.CONDITIONS]
    flat = {r["group"]: r for r in summary.ratios(same, resamples=200)}["all"]
    assert (flat["ratio"], flat["ci_low"], flat["ci_high"]) == (1.0, 1.0, 1.0)
    assert flat["wilcoxon"]["why_not"] == "every case's times are equal"


def test_the_markdown_puts_the_papers_numbers_beside_ours(tmp_path: Path) -> None:
    reads, answers = _recorded()
    made = summary.summarise({"name": "s1", "mock": True, "readers": ["dr-a", "dr-b"],
                              "cases": 3}, reads, answers)
    text = figures.markdown(made)
    assert "**MOCK**" in text and "| A1 The reasoning trace includes" in text
    assert "| 4.00 | 0.82 | 4 | 4.5 |" in text
    assert "| abnormal | No AI | 5.50 |" in text and "5.5 |" in text
    paths, warning = figures.write(made, tmp_path)
    assert warning == ""
    assert sorted(p.name for p in paths) == sorted(
        ["summary.json", "summary.md", *figures.FIGURES])
    for name in figures.FIGURES:
        with Image.open(tmp_path / name) as im:
            assert im.size[0] > 500
    assert json.loads((tmp_path / "summary.json").read_text())["reads_done"] == 18


# -- a study in a database, read through the API ------------------------------------------

@pytest.fixture
def rt(tmp_path: Path) -> Runtime:
    return configure(load_settings(None, {}, data_dir=tmp_path / "data", api_token=TOKEN))


def add_case(rt: Runtime, tmp_path: Path, n: int, labels: list[str], mock: bool = False,
             photometric: str = "MONOCHROME2") -> int:
    """A done job over a real DICOM file in the spool, with a full result."""
    ds = make_cr(size=48, seed=n)
    ds.PhotometricInterpretation = photometric
    path = tmp_path / f"case-{n}.dcm"
    ds.save_as(path, enforce_file_format=True)
    result = {"status": "ok", "labels": labels, "backend": "mock" if mock else "openai",
              "is_mock": mock, "model_id": "nvidia/NV-Reason-CXR-3B",
              "reasoning": f"REASONING-{n}: the left costophrenic angle is blunted.",
              "report_text": f"{REPORT_TEXT} ({n})", "answer": ", ".join(labels)}
    with rt.db.session() as s:
        s.add(Instance(sop_instance_uid=str(ds.SOPInstanceUID), sop_class_uid=ds.SOPClassUID,
                       study_instance_uid=str(ds.StudyInstanceUID), path=str(path),
                       size=path.stat().st_size, sha256="0" * 64, received_at=now(),
                       admission="admitted"))
        job = Job(study_instance_uid=str(ds.StudyInstanceUID),
                  sop_instance_uid=str(ds.SOPInstanceUID), state="done", created_at=now(),
                  updated_at=now(), source_header="{}", result=json.dumps(result), rule="chest",
                  model_input=b"\x89PNG model input")
        s.add(job)
        s.commit()
        return job.id


@pytest.fixture
def study(rt: Runtime, tmp_path: Path) -> dict[str, Any]:
    jobs = [add_case(rt, tmp_path, n, labels) for n, labels in
            enumerate([["Pleural Effusion"], [], ["Edema", "Support Devices"]], 1)]
    with rt.db.session() as s:
        uids = [s.get(Job, j).study_instance_uid for j in jobs]
        made = {name: tokens.add(s, name) for name in ("dr-a", "dr-b")}
        cases = [reader_studies.CaseIn(j, u) for j, u in zip(jobs, uids, strict=True)]
        reader_studies.create(s, "pilot", cases, ["dr-a", "dr-b"], 5, ["FINDINGS",
                                                                         "IMPRESSION"])
    return {"jobs": jobs, "tokens": made}


@pytest.fixture
def client(rt: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(rt.settings, rt.db, lambda queue: 0),
                    follow_redirects=False) as test_client:
        yield test_client


OUTPUT_ROUTES = ("/api/jobs/{job}", "/api/jobs/{job}/preview.png", "/api/jobs/{job}/reviews",
                 "/api/jobs/{job}/questions")
LIST_ROUTES = ("/api/overview", "/api/jobs", "/api/reviews/agreement")


def _codes(client: TestClient, token: str, job: int) -> dict[str, int]:
    return {r: client.get(r.format(job=job), headers=bearer(token)).status_code
            for r in OUTPUT_ROUTES}


def _answer_all(client: TestClient, token: str, view: dict[str, Any]) -> dict[str, Any]:
    answers = {i["code"]: 4 for i in view["items"]}
    got = client.post("/api/readers/pilot/answers", headers=bearer(token),
                      json={"position": view["position"], "answers": answers})
    assert got.status_code == 200, got.text
    return dict(got.json())


def test_a_reader_walks_the_schedule_blinded_until_each_earlier_read_is_done(
        rt: Runtime, client: TestClient, study: dict[str, Any]) -> None:
    token, other = study["tokens"]["dr-a"], study["tokens"]["dr-b"]
    with rt.db.session() as s:
        planned = s.execute(select(reader_studies.ReaderRead.job_id,
                                   reader_studies.ReaderRead.condition).where(
            reader_studies.ReaderRead.reader == "dr-a").order_by(
            reader_studies.ReaderRead.position)).all()
    seen: list[tuple[int, str]] = []
    view = client.get("/api/readers/pilot/current", headers=bearer(token)).json()
    while view["stage"] != "finished":
        job, condition = planned[view["position"] - 1]
        assert view["condition"] == condition
        seen.append((job, condition))
        codes = _codes(client, token, job)
        if condition == design.NO_AI:
            assert "labels" not in view and "reasoning" not in view
            assert view["prefill"] == "FINDINGS:\n\nIMPRESSION:\n\n"
        if condition == design.LABELS:
            assert "reasoning" not in view and "structured_report" not in view
            assert view["prefill"].startswith(f"my no-AI report on job {job}")
        if condition == design.FULL:
            assert view["reasoning"].startswith("REASONING-")
            assert view["structured_report"].startswith(REPORT_TEXT)
            assert view["prefill"] == "FINDINGS:\n\nIMPRESSION:\n\n"
        assert set(codes.values()) == ({200} if condition == design.FULL else {403}), codes
        for route in LIST_ROUTES:  # held back while any labels-only read is to come
            assert client.get(route, headers=bearer(token)).status_code == (
                200 if condition == design.FULL else 403)
        assert client.get(f"/api/jobs/{job}", headers=bearer(TOKEN)).status_code == 200
        image = client.get(f"/api/readers/pilot/image.png?position={view['position']}",
                           headers=bearer(token))
        assert image.status_code == 200 and Image.open(io.BytesIO(image.content)).size == (
            48, 48)  # the source at full resolution, not the model's input
        sent = client.post("/api/readers/pilot/report", headers=bearer(token), json={
            "position": view["position"], "report": f"my {condition} report on job {job}"
            if condition != design.NO_AI else f"my no-AI report on job {job}"})
        assert sent.status_code == 200, sent.text
        view = sent.json()
        if view["stage"] == "questions":
            assert client.post("/api/readers/pilot/answers", headers=bearer(token), json={
                "position": view["position"], "answers": {"B1": 3}}).status_code == 422
            assert client.get("/api/readers/pilot/current", headers=bearer(token)).json()[
                "position"] == view["position"]  # the questionnaire comes before the next case
            view = _answer_all(client, token, view)
    assert sorted(seen) == sorted(planned) and len(seen) == 9
    for job in study["jobs"]:  # done: everything visible to dr-a, nothing yet to dr-b
        assert set(_codes(client, token, job).values()) == {200}
        assert set(_codes(client, other, job).values()) == {403}
    for route in LIST_ROUTES:
        assert client.get(route, headers=bearer(token)).status_code == 200
        assert client.get(route, headers=bearer(other)).status_code == 403


def test_reads_are_taken_only_at_the_readers_own_position(rt: Runtime, client: TestClient,
                                                          study: dict[str, Any]) -> None:
    token = study["tokens"]["dr-a"]
    view = client.get("/api/readers/pilot/current", headers=bearer(token)).json()
    wrong = client.post("/api/readers/pilot/report", headers=bearer(token),
                        json={"position": view["position"] + 1, "report": "x"})
    assert wrong.status_code == 409 and "at position 1" in wrong.json()["detail"]
    empty = client.post("/api/readers/pilot/report", headers=bearer(token),
                        json={"position": 1, "report": "  "})
    assert empty.status_code == 422
    assert client.get("/api/readers/pilot/current", headers=bearer(TOKEN)).status_code == 403
    assert client.get("/api/readers/pilot/summary", headers=bearer(token)).status_code == 403
    assert client.get("/api/readers/pilot/summary", headers=bearer(TOKEN)).status_code == 200
    assert client.get("/api/readers/nope/current", headers=bearer(token)).status_code == 404
    listed = client.get("/api/readers", headers=bearer(token)).json()
    assert [p["reader"] for p in listed[0]["progress"]] == ["dr-a"]  # only their own
    everyone = client.get("/api/readers", headers=bearer(TOKEN)).json()
    assert [p["reader"] for p in everyone[0]["progress"]] == ["dr-a", "dr-b"]
    assert client.get("/api/readers/pilot/image.png?position=5",
                      headers=bearer(token)).status_code == 404  # not shown yet


def test_the_clock_is_the_servers_and_active_time_is_bounded(rt: Runtime, client: TestClient,
                                                             study: dict[str, Any]) -> None:
    token = study["tokens"]["dr-a"]
    client.get("/api/readers/pilot/current", headers=bearer(token))
    assert client.post("/api/readers/pilot/active", headers=bearer(token),
                       json={"position": 1, "seconds": 5000}).status_code == 204
    client.post("/api/readers/pilot/report", headers=bearer(token),
                json={"position": 1, "report": "FINDINGS: clear", "active_seconds": 3000})
    with rt.db.session() as s:
        read = reader_studies.read_at(s, 1, "dr-a", 1)
        assert read is not None and read.reported_at is not None and read.shown_at is not None
        elapsed = read.reported_at - read.shown_at
        assert read.active_seconds <= elapsed + 2.0  # never more than the time that passed
        assert read.done_at == read.reported_at  # no questionnaire after no AI


def test_the_display_chain_windows_at_full_resolution() -> None:
    from dicom_gateway.imaging.display import dicom_source, render_png

    ds = make_cr(size=32, bits=12, seed=1)
    ds.WindowCenter, ds.WindowWidth = 2048, 4096
    src = dicom_source(ds)
    assert (src.center, src.width, src.size) == (2048.0, 4096.0, (32, 32))
    pixels = np.asarray(Image.open(io.BytesIO(render_png(src))))
    raw = ds.pixel_array.astype(float)
    expected = np.round(np.clip((raw - 2047.5) / 4095 + 0.5, 0, 1) * 255)
    assert np.abs(pixels.astype(float) - expected).max() <= 1
    narrow = np.asarray(Image.open(io.BytesIO(render_png(src, 2048, 2))))
    assert set(np.unique(narrow)) <= {0, 255}
    ds.PhotometricInterpretation = "MONOCHROME1"
    inverted = np.asarray(Image.open(io.BytesIO(render_png(dicom_source(ds)))))
    assert np.abs(inverted.astype(int) + pixels.astype(int) - 255).max() <= 1


# -- the commands ------------------------------------------------------------------------

def test_readers_commands_create_status_export_and_summary(
        rt: Runtime, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    jobs = [add_case(rt, tmp_path, n, labels) for n, labels in
            enumerate([["Edema"], [], ["Pneumothorax"]], 1)]
    with rt.db.session() as s:
        uids = [s.get(Job, j).study_instance_uid for j in jobs]
    data = ["--data-dir", str(rt.settings.data_dir)]
    listed = tmp_path / "uids.txt"
    listed.write_text("# three cases\n" + "\n".join(uids) + "\n")
    labels = tmp_path / "labels.csv"
    from models.labels import CHEXPERT_LABELS
    with labels.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["study_id", *CHEXPERT_LABELS])
        writer.writeheader()
        writer.writerow({"study_id": uids[0], "Edema": "1"})
        writer.writerow({"study_id": uids[1], "No Finding": "1"})
    assert main(["readers", "create", "s1", "--cases", str(listed), "--readers",
                 "dr-a,dr-b", "--labels", str(labels), "--seed", "9", *data]) == 0
    out = capsys.readouterr()
    assert "3 cases (file uids.txt; 1 abnormal, 1 normal, 1 without reference)" in out.out
    assert "dr-a has no live token yet" in out.err
    assert main(["readers", "create", "s2", "--cases", "rule:chest", "--readers", "dr-a",
                 *data]) == 0
    capsys.readouterr()
    assert main(["readers", "create", "s1", "--cases", "rule:chest", "--readers", "x",
                 *data]) == 2
    assert "exists" in capsys.readouterr().err
    (tmp_path / "missing.txt").write_text(uids[0] + "\n1.2.3.4.5\n")
    assert main(["readers", "create", "s3", "--cases", str(tmp_path / "missing.txt"),
                 "--readers", "dr-a", *data]) == 2
    assert "1 of 2 studies have no processed job (done, with a model result): 1.2.3.4.5" in (
        capsys.readouterr().err)
    assert main(["readers", "status", "s1", *data]) == 0
    assert "dr-a                     0 / 9     next 1" in capsys.readouterr().out
    assert main(["readers", "export", "s1", "-o", str(tmp_path / "x"), *data]) == 0
    capsys.readouterr()
    with (tmp_path / "x" / "reads.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 18 and {r["reference"] for r in rows} == {"abnormal", "normal", ""}
    assert main(["readers", "summary", "s1", "-o", str(tmp_path / "sum"), *data]) == 0
    assert "# Reader study s1" in capsys.readouterr().out
    assert all((tmp_path / "sum" / name).exists() for name in figures.FIGURES)


def test_a_study_over_mock_results_is_refused_unless_asked_and_then_says_mock(
        rt: Runtime, tmp_path: Path, client: TestClient,
        capsys: pytest.CaptureFixture[str]) -> None:
    jobs = [add_case(rt, tmp_path, n, ["Edema"], mock=True) for n in (1, 2)]
    with rt.db.session() as s:
        uids = [s.get(Job, j).study_instance_uid for j in jobs]
        token = tokens.add(s, "dr-m")
    listed = tmp_path / "uids.txt"
    listed.write_text("\n".join(uids))
    data = ["--data-dir", str(rt.settings.data_dir)]
    assert main(["readers", "create", "m", "--cases", str(listed), "--readers", "dr-m",
                 *data]) == 2
    assert "mock backend, which is for wiring only; --allow-mock" in capsys.readouterr().err
    assert main(["readers", "create", "m", "--cases", str(listed), "--readers", "dr-m",
                 "--allow-mock", *data]) == 0
    assert "MOCK" in capsys.readouterr().out
    view = client.get("/api/readers/m/current", headers=bearer(token)).json()
    assert view["mock"] and "MOCK" in view["mock_note"]
    assert main(["readers", "summary", "m", "-o", str(tmp_path / "m"), *data]) == 0
    assert "**MOCK**" in capsys.readouterr().out
    with (tmp_path / "m" / "summary.json").open() as fh:
        assert json.load(fh)["mock"] is True


def test_cases_from_a_batch_with_the_reviewers_verdicts_as_reference(rt: Runtime,
                                                                      tmp_path: Path) -> None:
    from worker.readers import cases
    from worker.store import reviews
    from worker.store.db import BatchItem, BatchRun

    jobs = [add_case(rt, tmp_path, n, labels) for n, labels in
            enumerate([["Edema"], ["No Finding"], []], 1)]
    with rt.db.session() as s:
        run = BatchRun(name="retro", source="/x", kind="folder", model_key="k", prompt="p",
                       conversion="mimic", created_at=now())
        s.add(run)
        s.flush()
        for i, job_id in enumerate(jobs):
            job = s.get(Job, job_id)
            s.add(BatchItem(run_id=run.id, study_key=f"key-{i}",
                            study_instance_uid=job.study_instance_uid, job_id=job_id))
        s.commit()
        for job_id in jobs[:2]:  # the reviewer agrees with the model on two of them
            job = s.get(Job, job_id)
            reviews.record(s, job, "dr-r", reviews.decide(reviews.model_labels(job)))
        chosen = cases.choose(s, "batch:retro")
        assert [c.job_id for c in chosen.cases] == jobs and chosen.source == "batch retro"
        assert chosen.keys[chosen.cases[0].study_instance_uid] == "key-0"
        given = cases.with_references(s, chosen, "reviews")
        assert [c.reference for c in given] == ["abnormal", "normal", ""]
        with pytest.raises(reader_studies.StudyError, match="no batch run named 'nope'"):
            cases.choose(s, "batch:nope")
        with pytest.raises(reader_studies.StudyError, match="not batch:NAME, rule:NAME"):
            cases.choose(s, str(tmp_path / "absent.txt"))


def test_a_question_on_a_case_is_hidden_from_its_reader_like_the_case(
        rt: Runtime, client: TestClient, study: dict[str, Any]) -> None:
    from worker.store import questions

    job_id = study["jobs"][0]
    with rt.db.session() as s:
        asked = questions.record(s, s.get(Job, job_id), "Where is the effusion?", "operator",
                                 "gpu")
    token = study["tokens"]["dr-a"]
    for path in (f"/api/questions/{asked.id}", f"/api/jobs/{job_id}/questions"):
        assert client.get(path, headers=bearer(token)).status_code == 403
        assert client.get(path, headers=bearer(TOKEN)).status_code == 200
    refused = client.post(f"/api/questions/{asked.id}/addendum", headers=bearer(token))
    assert refused.status_code == 403 and "stays hidden" in refused.json()["detail"]
