"""Radiologist review (issue 25, part 2): reviewer verdicts, named tokens, the labels
export that ``evaluate`` reads, evaluation that cannot be misread (MOCK, mixed models),
batch progress on the dashboard and ``batch status``'s rate; and the dashboard in a real
headless Chromium (a question typed and answered, a verdict with two labels changed)."""

from __future__ import annotations

import csv
import json
import subprocess
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from models.labels import CHEXPERT_LABELS
from tests.test_api import form_login
from worker.cli import main
from worker.ops.api import COOKIE, create_app
from worker.research.evaluate import (
    MOCK_BANNER,
    EvaluationError,
    Policy,
    evaluate,
    evaluate_per_model,
    load_labels,
    load_predictions,
)
from worker.research.evaluate_outputs import chart_title, markdown
from worker.runtime import Runtime, configure
from worker.settings import load_settings
from worker.store import progress, reviews, tokens
from worker.store.db import BatchItem, BatchRun, Job, Review, now

with warnings.catch_warnings():  # starlette's note about httpx, not about this code
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

TOKEN = "operator-token-0425-abcdefghijklmn"
SCREENSHOT = Path("/tmp/review_dashboard.png")  # described in the report; not committed


def add_job(rt: Runtime, labels: list[str], backend: str = "local", revision: str = "r1",
            status: str = "ok", batch_run_id: int | None = None, uid: str = "") -> int:
    """A done job whose model called ``labels`` (UIDs only, as the gateway keeps them)."""
    with rt.db.session() as s:
        n = len(s.scalars(select(Job.id)).all()) + 1
        job = Job(study_instance_uid=uid or f"1.2.826.0.1.3680043.10.99.{n}",
                  sop_instance_uid=f"1.2.826.0.1.3680043.10.98.{n}", state="done",
                  created_at=now(), updated_at=now(), source_header="{}",
                  batch_run_id=batch_run_id, priority=9 if batch_run_id else 0,
                  result=json.dumps({"status": status, "labels": labels, "backend": backend,
                                     "model_id": "nvidia/NV-Reason-CXR-3B",
                                     "model_revision": revision, "is_mock": backend == "mock",
                                     "reasoning": "r", "answer": ", ".join(labels)}))
        s.add(job)
        s.commit()
        return job.id


@pytest.fixture
def rt(tmp_path: Path) -> Runtime:
    return configure(load_settings(None, {}, data_dir=tmp_path / "data", api_token=TOKEN))


@pytest.fixture
def client(rt: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(rt.settings, rt.db, lambda queue: 0),
                    follow_redirects=False) as test_client:
        yield test_client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# -- the verdict's rules (pure) ---------------------------------------------------------------

def test_a_verdict_names_only_what_changes_and_refuses_a_label_named_two_ways() -> None:
    decided = {v.label: v for v in reviews.decide(
        ["Pneumothorax", "Support Devices"], add=["edema"], remove=["Pneumothorax"],
        not_assessable=["fracture"], disagree=["pleural_effusion"])}
    assert len(decided) == 14
    assert (decided["Edema"].verdict, decided["Edema"].reviewer_present) == ("disagree", 1)
    assert (decided["Pneumothorax"].verdict, decided["Pneumothorax"].reviewer_present) == (
        "disagree", 0)
    assert (decided["Pleural Effusion"].verdict,
            decided["Pleural Effusion"].reviewer_present) == ("disagree", 1)
    assert (decided["Fracture"].verdict, decided["Fracture"].reviewer_present) == (
        "not_assessable", None)
    assert (decided["Support Devices"].verdict,
            decided["Support Devices"].reviewer_present) == ("agree", 1)
    assert {k for k, v in decided.items() if v.verdict == "agree"} == set(CHEXPERT_LABELS) - {
        "Edema", "Pneumothorax", "Pleural Effusion", "Fracture"}
    # adding what the model already called is agreeing with it
    assert reviews.decide(["Edema"], add=["Edema"])[CHEXPERT_LABELS.index("Edema")
                                                     ].verdict == "agree"
    with pytest.raises(reviews.ReviewError, match="named twice"):
        reviews.decide(["Edema"], add=["Edema"], remove=["edema"])
    with pytest.raises(reviews.ReviewError, match="not one of the 14 labels"):
        reviews.decide([], add=["Pneumonitis"])
    with pytest.raises(reviews.ReviewError, match="not a verdict"):
        reviews.decide([], verdicts={"Edema": "maybe"})


# -- named tokens, the API, the metrics --------------------------------------------------------

def test_named_tokens_name_the_reviewer_revoked_ones_fail_and_the_operator_token_works(
        rt: Runtime, client: TestClient, capsys: pytest.CaptureFixture[str]) -> None:
    job = add_job(rt, ["Edema", "Support Devices"])
    data = ["--data-dir", str(rt.settings.data_dir)]
    assert main(["tokens", "add", "dr-smith", *data]) == 0
    token = capsys.readouterr().out.strip()
    assert token.startswith(tokens.PREFIX)
    with rt.db.session() as s:  # stored hashed: the token's text is nowhere in the row
        row = tokens.listing(s)[0]
        stored = s.scalars(select(tokens.ApiToken.token_sha256)).one()
    assert row["name"] == "dr-smith" and row["state"] == "active"
    assert stored == tokens.digest(token) and token not in stored
    assert main(["tokens", "add", "dr-smith", *data]) == 2  # one live token per name
    assert main(["tokens", "add", "operator", *data]) == 2  # the operator's name is taken
    capsys.readouterr()

    assert client.get("/api/me", headers=bearer(token)).json()["name"] == "dr-smith"
    assert client.get("/api/me", headers=bearer(TOKEN)).json()["name"] == "operator"
    verdict = client.post(f"/api/jobs/{job}/reviews", headers=bearer(token),
                          json={"add": ["Pneumothorax"], "remove": ["Edema"],
                                "note": "effusion absent", "reviewer": "somebody else"})
    assert verdict.status_code == 201, verdict.text
    body = verdict.json()
    assert body["reviewer"] == "dr-smith"  # the token's name, not a name the body claims
    assert body["changed"] == ["Edema", "Pneumothorax"]
    assert body["labels"] == ["Pneumothorax", "Support Devices"]
    by_operator = client.post(f"/api/jobs/{job}/reviews", headers=bearer(TOKEN), json={})
    assert by_operator.status_code == 201 and by_operator.json()["reviewer"] == "operator"
    assert client.post(f"/api/jobs/{job}/reviews", headers=bearer(token),
                       json={"verdicts": {"Edema": "perhaps"}}).status_code == 422
    assert client.post("/api/jobs/999/reviews", headers=bearer(token), json={}
                       ).status_code == 404
    with rt.db.session() as s:  # a job the model has not read yet cannot be judged
        s.get(Job, add_job(rt, [])).result = None
        s.commit()
    assert client.post(f"/api/jobs/{job + 1}/reviews", headers=bearer(token), json={}
                       ).status_code == 409
    shown = client.get(f"/api/jobs/{job}/reviews", headers=bearer(token)).json()
    assert [r["reviewer"] for r in shown["reviews"]] == ["operator", "dr-smith"]
    assert shown["model_labels"] == ["Edema", "Support Devices"]

    # the dashboard's login takes a named token too, and records under its name
    login = form_login(client, token)
    assert login.status_code == 303 and login.headers["set-cookie"].startswith(f"{COOKIE}=")
    assert token not in login.headers["set-cookie"]  # a session id, not the token
    assert client.get("/").status_code == 200
    assert client.get("/api/me").json()["name"] == "dr-smith"
    client.cookies.clear()

    assert main(["tokens", "revoke", "dr-smith", *data]) == 0
    assert capsys.readouterr().out == "revoked the token of dr-smith\n"
    for path in ("/api/me", "/api/overview", f"/api/jobs/{job}/reviews"):
        assert client.get(path, headers=bearer(token)).status_code == 401, path
        assert client.get(path, headers=bearer(TOKEN)).status_code == 200, path
    assert client.post(f"/api/jobs/{job}/reviews", headers=bearer(token), json={}
                       ).status_code == 401
    assert form_login(client, token).status_code == 401
    assert main(["tokens", "revoke", "dr-smith", *data]) == 2  # nothing left to revoke
    assert main(["tokens", "list", "--json", *data]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(t["name"], t["state"]) for t in listed] == [("dr-smith", "revoked")]
    for path in ("/api/me", f"/api/jobs/{job}/reviews", "/api/reviews/agreement",
                 "/api/batches"):
        assert client.get(path).status_code == 401, path  # everything respects the auth


def test_agreement_per_label_and_the_metrics_count_verdicts(
        rt: Runtime, client: TestClient, capsys: pytest.CaptureFixture[str]) -> None:
    jobs = [add_job(rt, ["Edema"]), add_job(rt, ["Edema", "Cardiomegaly"]),
            add_job(rt, [])]
    said = [{"remove": ["Edema"]}, {}, {"add": ["Edema"], "verdicts": {
        "Cardiomegaly": "not_assessable"}}]
    for job, body in zip(jobs, said, strict=True):
        assert client.post(f"/api/jobs/{job}/reviews", headers=bearer(TOKEN), json=body
                           ).status_code == 201
    # the operator changes their mind on the second job: only the newer verdict counts
    assert client.post(f"/api/jobs/{jobs[1]}/reviews", headers=bearer(TOKEN),
                       json={"remove": ["Cardiomegaly"]}).status_code == 201
    a = client.get("/api/reviews/agreement", headers=bearer(TOKEN)).json()
    per = {row["label"]: row for row in a["labels"]}
    assert (a["reviews"], a["studies"], a["reviewers"]) == (3, 3, ["operator"])
    assert (per["Edema"]["agree"], per["Edema"]["disagree"]) == (1, 2)
    assert per["Edema"]["agreement"] == pytest.approx(1 / 3, abs=1e-4)
    assert (per["Cardiomegaly"]["agree"], per["Cardiomegaly"]["disagree"],
            per["Cardiomegaly"]["not_assessable"]) == (1, 1, 1)
    assert per["Fracture"]["agreement"] == 1.0
    assert a["agreement"] == pytest.approx((42 - 1 - 3) / (42 - 1), abs=1e-4)
    text = client.get("/metrics").text
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(text) for s in f.samples}
    assert samples[("cxr_review_verdicts_total", ())] == 4
    assert samples[("cxr_review_label_verdicts", (("verdict", "disagree"),))] == 3
    assert samples[("cxr_review_label_verdicts", (("verdict", "not_assessable"),))] == 1
    assert samples[("cxr_review_label_verdicts", (("verdict", "agree"),))] == 38
    assert main(["reviews", "agreement", "--data-dir", str(rt.settings.data_dir)]) == 0
    shown = capsys.readouterr().out
    assert "3 verdict(s) on 3 stud(ies) by operator" in shown
    assert any(line.split()[:3] == ["Edema", "1", "2"] and line.endswith("33.3 %")
               for line in shown.splitlines())
    with rt.db.session() as s:
        assert len(s.scalars(select(Review)).all()) == 4  # the replaced verdict is kept


def test_the_review_command_records_and_shows_verdicts(
        rt: Runtime, capsys: pytest.CaptureFixture[str]) -> None:
    job = add_job(rt, ["Pneumothorax", "Support Devices"])
    data = ["--data-dir", str(rt.settings.data_dir)]
    assert main(["review", str(job), *data]) == 0
    assert "no verdict yet" in capsys.readouterr().out
    # a name only a live token has (worker.store.callers): refused until dr-lee has one
    assert main(["review", str(job), "--agree", "--reviewer", "dr-lee", *data]) == 2
    assert "error: --reviewer 'dr-lee': no live token has that name" in \
        capsys.readouterr().err
    assert main(["tokens", "add", "dr-lee", *data]) == 0
    capsys.readouterr()
    assert main(["review", str(job), "--agree", "--add", "Edema", "--remove", "Pneumothorax",
                 "--not-assessable", "Fracture", "--note", "tube tip ok",
                 "--reviewer", "dr-lee", *data]) == 0
    out = capsys.readouterr().out
    assert "by dr-lee" in out and "Edema (added), Pneumothorax (removed)" in out
    assert "reviewer  Edema, Support Devices" in out and "not assessable  Fracture" in out
    assert main(["review", str(job), "--json", *data]) == 0
    [shown] = json.loads(capsys.readouterr().out)
    assert shown["note"] == "tube tip ok" and shown["verdicts"]["Fracture"] == "not_assessable"
    assert main(["review", str(job), "--add", "Edema", "--remove", "edema", *data]) == 2
    assert main(["review", str(job), "--add", "Pneumonitis", *data]) == 2
    assert main(["review", "4242", "--agree", *data]) == 2


# -- reviews export -> evaluate ------------------------------------------------------------

def test_reviews_export_is_read_by_evaluate_and_its_figures_check_by_hand(
        rt: Runtime, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Four reviewed studies, the figures worked out by hand for three labels.

    model calls            reviewer's set (from the verdicts)
    s1  Edema              Edema                        (all agreed)
    s2  Edema              -                            (--remove Edema)
    s3  -                  Edema, Cardiomegaly          (--add both)
    s4  Cardiomegaly       Cardiomegaly; Edema n/a      (Edema not assessable: -1)

    Edema: gold counted s1=1 s2=0 s3=1 (s4 ignored); predicted 1 1 0 -> tp 1 fp 1 fn 1,
    precision 1/2, recall 1/2, F1 1/2.  Cardiomegaly: gold s3=1 s4=1, others 0; predicted
    s4 only -> tp 1 fp 0 fn 1: precision 1, recall 1/2, F1 2/3.  Fracture: nobody calls it
    -> F1 0 with support 0.
    """
    with rt.db.session() as s:
        run = BatchRun(name="q1", source="/data/q1", kind="folder", model_key="local|m@r1",
                       prompt="p", conversion="c", created_at=now())
        s.add(run)
        s.commit()
        run_id = run.id
    calls = [["Edema"], ["Edema"], [], ["Cardiomegaly"]]
    jobs = [add_job(rt, c, batch_run_id=run_id) for c in calls]
    live = add_job(rt, ["Fracture"])  # reviewed, but not of the batch
    with rt.db.session() as s:
        for i, job_id in enumerate(jobs):
            s.add(BatchItem(run_id=run_id, study_key=f"study-{i + 1}",
                            study_instance_uid=s.get(Job, job_id).study_instance_uid,
                            state="done", reason="", job_id=job_id))
        s.commit()
    data = ["--data-dir", str(rt.settings.data_dir)]
    assert main(["tokens", "add", "dr-lee", *data]) == 0
    for job, options in zip([*jobs, live], [["--agree"], ["--remove", "Edema"],
                                            ["--add", "Edema", "Cardiomegaly"],
                                            ["--not-assessable", "Edema"], ["--agree"]],
                            strict=True):
        assert main(["review", str(job), *options, "--reviewer", "dr-lee", *data]) == 0
    labels, predictions = tmp_path / "labels.csv", tmp_path / "predictions.csv"
    assert main(["reviews", "export", "--batch", "q1", "-o", str(labels),
                 "--predictions", str(predictions), *data]) == 0
    assert "4 reviewed studies" in capsys.readouterr().out
    with labels.open(newline="") as fh:
        rows = {r["study_id"]: r for r in csv.DictReader(fh)}
    assert set(rows) == {"study-1", "study-2", "study-3", "study-4"}
    assert [rows[f"study-{i}"]["Edema"] for i in (1, 2, 3, 4)] == ["1", "0", "1", "-1"]
    assert rows["study-4"]["reviewer"] == "dr-lee"

    assert main(["evaluate", str(predictions), str(labels), "--bootstrap", "0",
                 "--out", str(tmp_path / "eval")]) == 0
    result = json.loads((tmp_path / "eval" / "evaluation.json").read_text())
    by = {c["label"]: c for c in result["classes"]}
    assert result["studies_counted"] == 4 and not result["mock"]
    assert (by["Edema"]["tp"], by["Edema"]["fp"], by["Edema"]["fn"]) == (1, 1, 1)
    assert (by["Edema"]["precision"], by["Edema"]["recall"], by["Edema"]["f1"]) == (
        pytest.approx(0.5), pytest.approx(0.5), pytest.approx(0.5))
    assert by["Edema"]["counted"] == 3  # not assessable is ignored for that class
    assert (by["Cardiomegaly"]["precision"], by["Cardiomegaly"]["recall"],
            by["Cardiomegaly"]["f1"]) == (1.0, 0.5, pytest.approx(2 / 3))
    assert (by["Fracture"]["f1"], by["Fracture"]["support"]) == (0.0, 0)
    # the batch's own predictions file is keyed the same way: the labels fit it as well
    assert main(["batch", "export", "q1", "--out", str(tmp_path / "batch"), *data]) == 0
    assert main(["evaluate", str(tmp_path / "batch" / "predictions.csv"), str(labels),
                 "--bootstrap", "0", "--out", str(tmp_path / "eval2")]) == 0
    again = json.loads((tmp_path / "eval2" / "evaluation.json").read_text())
    assert again["classes"] == result["classes"]
    # without --batch: every reviewed study, keyed by its StudyInstanceUID
    assert main(["reviews", "export", "-o", str(tmp_path / "all.csv"), *data]) == 0
    with (tmp_path / "all.csv").open(newline="") as fh:
        assert len(list(csv.DictReader(fh))) == 5


# -- evaluation that cannot be misread --------------------------------------------------------

def _files(tmp_path: Path, rows: list[dict[str, Any]]) -> tuple[Path, Path]:
    preds, labels = tmp_path / "predictions.jsonl", tmp_path / "labels.csv"
    preds.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with labels.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["study_id", *CHEXPERT_LABELS])
        for r in rows:
            writer.writerow([r["study_id"], *(int(c == "Edema") for c in CHEXPERT_LABELS)])
    return preds, labels


def _row(i: int, backend: str, revision: str = "r1", edema: int = 1) -> dict[str, Any]:
    return {"study_id": f"s{i}", "state": "done", "status": "mock" if backend == "mock"
            else "ok", "backend": backend, "model_id": "m", "model_revision": revision,
            **{c: int(c == "Edema" and edema) for c in CHEXPERT_LABELS}}


def test_mock_predictions_are_left_out_unless_asked_and_then_every_output_says_mock(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    preds, labels = _files(tmp_path, [_row(i, "mock") for i in range(4)])
    policy = Policy()
    with pytest.raises(EvaluationError, match="mock backend"):
        evaluate(load_predictions(preds), load_labels(labels, policy), policy, bootstrap=0)
    assert main(["evaluate", str(preds), str(labels)]) == 2
    assert "--include-mock" in capsys.readouterr().err
    assert main(["evaluate", str(preds), str(labels), "--include-mock", "--bootstrap", "0",
                 "--out", str(tmp_path / "eval")]) == 0
    printed = capsys.readouterr().out
    assert printed.splitlines()[0].startswith("MOCK")
    md = (tmp_path / "eval" / "evaluation.md").read_text()
    assert md.splitlines()[0].startswith("**MOCK")
    result = json.loads((tmp_path / "eval" / "evaluation.json").read_text())
    assert result["mock"] is True and result["warning"] == MOCK_BANNER
    assert chart_title(result).startswith("MOCK")
    assert (tmp_path / "eval" / "f1.png").exists()
    # beside real predictions, mock ones are left out and counted as such
    preds, labels = _files(tmp_path, [_row(0, "local"), _row(1, "local", edema=0),
                                      _row(2, "mock")])
    real = evaluate(load_predictions(preds), load_labels(labels, policy), policy, bootstrap=0)
    assert real["studies_counted"] == 2 and not real["mock"]
    assert not markdown(real).startswith("**MOCK") and "MOCK" not in chart_title(real)
    assert any(k.startswith("mock backend") for k in real["studies_excluded"])
    assert "no prediction" not in real["studies_excluded"]
    with pytest.raises(EvaluationError, match="more than one model"):  # mock + real: mixed
        evaluate(load_predictions(preds), load_labels(labels, policy), policy, bootstrap=0,
                 include_mock=True)


def test_a_file_mixing_models_is_refused_with_the_reason_or_reported_per_model(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = [_row(0, "local"), _row(1, "local"), _row(2, "local", "r2", edema=0),
            _row(3, "openai", "r9")]
    preds, labels = _files(tmp_path, rows)
    policy = Policy()
    with pytest.raises(EvaluationError) as refused:
        evaluate(load_predictions(preds), load_labels(labels, policy), policy, bootstrap=0)
    reason = str(refused.value)
    assert "local|m@r1 (2 studies)" in reason and "local|m@r2 (1 studies)" in reason
    assert "openai|m@r9 (1 studies)" in reason and "--per-model" in reason
    per = evaluate_per_model(load_predictions(preds), load_labels(labels, policy), policy,
                             bootstrap=0)
    assert {m: r["studies_counted"] for m, r in per.items()} == {
        "local|m@r1": 2, "local|m@r2": 1, "openai|m@r9": 1}
    edema = {m: next(c for c in r["classes"] if c["label"] == "Edema")["f1"]
             for m, r in per.items()}
    assert edema == {"local|m@r1": 1.0, "local|m@r2": 0.0, "openai|m@r9": 1.0}
    assert main(["evaluate", str(preds), str(labels)]) == 2
    assert "more than one model" in capsys.readouterr().err
    out = tmp_path / "per"
    assert main(["evaluate", str(preds), str(labels), "--per-model", "--bootstrap", "0",
                 "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["local_m_r1", "local_m_r2",
                                                     "openai_m_r9"]
    assert "Model: local|m@r2." in (out / "local_m_r2" / "evaluation.md").read_text()
    assert main(["evaluate", str(preds), str(labels), "--model", "local|m@r1",
                 "--bootstrap", "0", "--out", str(tmp_path / "one")]) == 0
    one = json.loads((tmp_path / "one" / "evaluation.json").read_text())
    assert one["model"] == "local|m@r1" and one["studies_counted"] == 2


# -- batches: rate over the processing time, the dashboard's table, live or batch -------------

def test_batch_rate_is_over_the_runs_processing_time(rt: Runtime, client: TestClient,
                                                     capsys: pytest.CaptureFixture[str]
                                                     ) -> None:
    t0 = now() - 3600  # an hour ago: a fixed 10-minute window would say 0 studies/s
    with rt.db.session() as s:
        run = BatchRun(name="twenty", source="/data/t", kind="folder", model_key="mock|m@r",
                       prompt="p", conversion="c", created_at=t0 - 5, scanned_at=t0,
                       finished_at=t0 + 10)
        s.add(run)
        s.flush()
        for i in range(20):  # 20 studies fetched at t0 and done within 10 s
            s.add(BatchItem(run_id=run.id, study_key=f"s{i}", study_instance_uid=f"1.{i}",
                            state="done", reason="", fetched_at=t0 + i * 0.1,
                            finished_at=t0 + 0.5 + i * 0.5))
        s.commit()
        shown = progress.run_progress(s, run)
    assert shown["rate_per_s"] == pytest.approx(2.0, rel=0.01)  # 20 studies / 10 s
    assert shown["elapsed_s"] == pytest.approx(10.0) and shown["eta_s"] == 0
    assert main(["batch", "status", "twenty", "--data-dir", str(rt.settings.data_dir)]) == 0
    assert "rate 2.0 studies/s over 10.0 s of processing" in capsys.readouterr().out

    # a run going on: 5 of 15 done in 10 s so far -> 0.5/s, 10 left -> ETA 20 s
    with rt.db.session() as s:
        going = BatchRun(name="going", source="/data/g", kind="folder", model_key="mock|m@r",
                         prompt="p", conversion="c", created_at=t0, scanned_at=t0)
        s.add(going)
        s.flush()
        at = now()
        for i in range(15):
            done = i < 5
            s.add(BatchItem(run_id=going.id, study_key=f"g{i}", study_instance_uid=f"2.{i}",
                            state="done" if done else "fetched" if i < 8 else "pending",
                            reason="", fetched_at=at - 10 if i < 8 else None,
                            finished_at=at - 10 + 2 * (i + 1) if done else None))
        s.commit()
        live = progress.run_progress(s, going, at=at)
    assert live["running"] and live["rate_per_s"] == pytest.approx(0.5)
    assert live["eta_s"] == 20
    listed = client.get("/api/batches", headers=bearer(TOKEN)).json()
    assert [b["name"] for b in listed] == ["going", "twenty"]
    assert listed[1]["rate_per_s"] == pytest.approx(2.0, rel=0.01)
    add_job(rt, [], batch_run_id=going.id)
    add_job(rt, [])
    modes = [j["mode"] for j in client.get("/api/overview",
                                           headers=bearer(TOKEN)).json()["recent_jobs"]]
    assert sorted(modes) == ["batch", "live"]
    page = client.get("/static/review.js")
    assert page.status_code == 200 and "review-save" in page.text


# -- the dashboard in a real headless Chromium ---------------------------------------------

def _get(port: int, path: str, token: str) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=bearer(token))
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.integration
def test_dashboard_question_answer_and_a_verdict_in_chromium(serve_factory: Any,
                                                             tmp_path: Path) -> None:
    from pydicom.uid import generate_uid
    from selenium.common.exceptions import (
        NoSuchElementException,
        StaleElementReferenceException,
    )
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.dicom_factory import make_cr, raw_c_store
    from tests.hostile_corpus import base, encode
    from tests.peers import BIN
    from tests.test_end_to_end import db_for
    from tests.test_operations import dashboard_login

    srv = serve_factory.new({"CXR_MOCK_LABELS": "Edema,Support Devices",
                             "CXR_API_TOKEN": TOKEN}).start()
    ds = base(seed=7)
    assert raw_c_store(srv.port, str(ds.SOPInstanceUID), encode(ds),
                       transfer_syntax="1.2.840.10008.1.2.1") == 0
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        with db_for(srv.data_dir).session() as s:
            states = s.scalars(select(Job.state)).all()
        if states == ["done"]:
            break
        time.sleep(0.3)
    assert states == ["done"]
    made = subprocess.run([str(BIN / "cxr-gateway"), "tokens", "add", "dr-lee",
                           "--data-dir", str(srv.data_dir)], capture_output=True, text=True,
                          timeout=120, env=srv.env)
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()

    browser, base_url = dashboard_login(srv.api_port, token)
    try:
        # the thread and the batch table are drawn again every few seconds: look afresh
        wait = WebDriverWait(browser, 180, ignored_exceptions=(
            NoSuchElementException, StaleElementReferenceException))
        wait.until(ec.text_to_be_present_in_element((By.ID, "detail"), "Edema"))
        # a question typed in the job panel; the answer appears in the thread
        box = wait.until(ec.element_to_be_clickable((By.ID, "question-input")))
        box.send_keys("Where do you see the edema?")
        browser.find_element(By.ID, "question-send").click()
        answer = wait.until(lambda b: b.find_element(
            By.CSS_SELECTOR, "#thread .question-answer").text.strip())
        assert "MOCK" in answer  # the mock backend's labelled reply
        # a verdict with two labels changed: Edema removed, Pneumothorax added
        wait.until(ec.presence_of_element_located((By.ID, "verdict-Edema-disagree"))).click()
        browser.find_element(By.ID, "verdict-Pneumothorax-disagree").click()
        assert "Pneumothorax, Support Devices" in browser.find_element(
            By.ID, "review-labels").text
        browser.find_element(By.ID, "review-note").send_keys("no edema; small apical PTX")
        browser.find_element(By.ID, "review-save").click()
        wait.until(ec.text_to_be_present_in_element((By.ID, "review-status"),
                                                    "saved by dr-lee"))
        wait.until(ec.text_to_be_present_in_element((By.ID, "review-history"),
                                                    "changed Edema, Pneumothorax"))
        wait.until(ec.text_to_be_present_in_element((By.ID, "agreement-summary"), "dr-lee"))
        browser.execute_script("document.getElementById('questions-panel').scrollIntoView()")
        browser.save_screenshot(str(SCREENSHOT))
        # a batch run beside the live job: its progress and rate, its jobs marked batch
        folder = tmp_path / "retro"
        folder.mkdir()
        for i in range(3):
            make_cr(generate_uid(), size=64, seed=300 + i).save_as(
                folder / f"cr-{i}.dcm", enforce_file_format=True)
        ran = subprocess.run([str(BIN / "cxr-gateway"), "batch", "run", str(folder),
                              "--name", "retro-q1", "--no-progress", "--data-dir",
                              str(srv.data_dir)], capture_output=True, text=True,
                             timeout=400, env=srv.env)
        assert ran.returncode == 0, ran.stderr
        batch_row = '#batches tr.batch[data-name="retro-q1"]'
        wait.until(lambda b: "3 / 3" in (text := b.find_element(
            By.CSS_SELECTOR, batch_row).text) and "studies/s over" in text)
        wait.until(lambda b: sorted(c.text for c in b.find_elements(
            By.CSS_SELECTOR, "#recent td.mode")) == ["batch", "batch", "batch", "live"])
        browser.execute_script("document.getElementById('batches').scrollIntoView()")
        browser.save_screenshot("/tmp/review_dashboard_batches.png")
    finally:
        browser.quit()
    assert SCREENSHOT.stat().st_size > 10_000
    with db_for(srv.data_dir).session() as s:
        [review] = s.scalars(select(Review)).all()
        job_id = review.job_id
        assert s.get(Job, job_id).batch_run_id is None  # the live job, not a batch one
        recorded = reviews.of_job(s, job_id)[0]
    assert review.reviewer == "dr-lee" and review.note == "no edema; small apical PTX"
    assert recorded["changed"] == ["Edema", "Pneumothorax"]
    assert recorded["labels"] == ["Pneumothorax", "Support Devices"]
    thread = json.loads(urllib.request.urlopen(urllib.request.Request(
        f"http://127.0.0.1:{srv.api_port}/api/jobs/{job_id}/questions",
        headers=bearer(TOKEN)), timeout=30).read())
    assert "dr-lee" in json.dumps(thread)  # the question carries the reviewer's name too
    revoked = subprocess.run([str(BIN / "cxr-gateway"), "tokens", "revoke", "dr-lee",
                              "--data-dir", str(srv.data_dir)], capture_output=True,
                             text=True, timeout=120, env=srv.env)
    assert revoked.returncode == 0, revoked.stderr
    assert _get(srv.api_port, "/api/overview", token) == 401
    assert _get(srv.api_port, "/api/overview", TOKEN) == 200


@pytest.mark.integration  # a real PostgreSQL (the many-machines database)
def test_tokens_verdicts_and_the_export_on_postgresql(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    from tests.peers import fresh_database

    url, drop = fresh_database()
    pg: Runtime | None = None
    try:
        monkeypatch.setenv("CXR_DATABASE_URL", url)
        pg = configure(load_settings(None, {}, data_dir=tmp_path / "data", api_token=TOKEN,
                                     database_url=url))
        jobs = [add_job(pg, ["Edema"]), add_job(pg, [])]
        data = ["--data-dir", str(pg.settings.data_dir)]
        assert main(["tokens", "add", "dr-pg", *data]) == 0
        token = capsys.readouterr().out.strip()
        with TestClient(create_app(pg.settings, pg.db, lambda queue: 0)) as api:
            for job, body in zip(jobs, [{"remove": ["Edema"]}, {"add": ["Edema"]}],
                                 strict=True):
                answer = api.post(f"/api/jobs/{job}/reviews", headers=bearer(token),
                                  json=body)
                assert answer.status_code == 201 and answer.json()["reviewer"] == "dr-pg"
            assert api.post(f"/api/jobs/{jobs[0]}/reviews", headers=bearer(token),
                            json={}).status_code == 201  # replaces dr-pg's first verdict
            agreed = api.get("/api/reviews/agreement", headers=bearer(TOKEN)).json()
            assert next(r for r in agreed["labels"] if r["label"] == "Edema")[
                "agreement"] == 0.5
            assert main(["tokens", "revoke", "dr-pg", *data]) == 0
            assert api.get("/api/me", headers=bearer(token)).status_code == 401
            assert api.get("/api/me", headers=bearer(TOKEN)).json()["name"] == "operator"
        assert main(["reviews", "export", "-o", str(tmp_path / "l.csv"), *data]) == 0
        with (tmp_path / "l.csv").open(newline="") as fh:
            assert sorted(r["Edema"] for r in csv.DictReader(fh)) == ["1", "1"]
    finally:
        if pg is not None:
            pg.db.engine.dispose()  # PostgreSQL drops no database with open sessions
        drop()
