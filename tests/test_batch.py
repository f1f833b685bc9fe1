"""Batch runs against a real Orthanc (C-FIND + C-MOVE, and its DICOMweb plugin), a DICOM
folder and a CSV of PNGs; killed halfway and run again, no study is inferred twice."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from highdicom.sr.utils import find_content_items
from pydicom import Dataset, dcmread
from pydicom.uid import generate_uid
from sqlalchemy import func, select

from dicom_gateway.imaging.conversion import convert_dataset
from models.backend import PINNED_REVISION
from models.labels import CHEXPERT_LABELS
from tests.dicom_factory import make_cr
from tests.peers import BIN, Orthanc, Serve, backend_env, sample_file
from tests.test_end_to_end import db_for
from tests.vllm_standin import SNAPSHOT_ROOT, VLLMStandin, labels_for
from worker.store.db import BatchItem, Job, JobEvent

pytestmark = pytest.mark.integration


def renewed(ds: Dataset, **attrs: object) -> Dataset:
    """The same image as a new study (fresh UIDs), with some attributes changed."""
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    for key, value in attrs.items():
        setattr(ds, key, value)
    return ds


def studies(folder: Path, chest: int = 4, small: int = 0) -> dict[str, str]:
    """RG1 variants, a lateral, an extremity CR, a CT, and ``small`` synthetic chest CRs,
    as files in ``folder``; returns study UID -> what it is."""
    folder.mkdir(parents=True, exist_ok=True)
    rg1 = sample_file("RG1_UNCR.dcm")
    made: dict[str, str] = {}
    for i in range(chest):
        ds = renewed(dcmread(rg1))
        ds.save_as(folder / f"rg1-{i}.dcm", enforce_file_format=True)
        made[str(ds.StudyInstanceUID)] = "chest"
    for i in range(small):
        ds = make_cr(generate_uid(), size=64, seed=100 + i)
        ds.save_as(folder / f"small-{i}.dcm", enforce_file_format=True)
        made[str(ds.StudyInstanceUID)] = "chest"
    lateral = renewed(dcmread(rg1), ViewPosition="LL")
    lateral.save_as(folder / "lateral.dcm", enforce_file_format=True)
    made[str(lateral.StudyInstanceUID)] = "lateral view"
    for name, what in (("RG3_UNCR.dcm", "not chest"), ("CT_small.dcm", "not a radiograph")):
        ds = renewed(dcmread(sample_file(name)))
        ds.save_as(folder / name, enforce_file_format=True)
        made[str(ds.StudyInstanceUID)] = what
    return made


def batch(serve: Serve, *args: str, env: dict[str, str] | None = None,
          wait: bool = True) -> subprocess.CompletedProcess[str] | subprocess.Popen[str]:
    cmd = [str(BIN / "cxr-gateway"), "batch", "run", *args, "--no-progress", "--data-dir",
           str(serve.data_dir)]
    full = {**serve.env, **(env or {})}
    if not wait:
        return subprocess.Popen(cmd, env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
    return subprocess.run(cmd, env=full, capture_output=True, text=True, timeout=400)


def predictions(path: Path) -> dict[str, dict[str, str]]:
    with path.open(newline="") as fh:
        return {row["study_instance_uid"]: row for row in csv.DictReader(fh)}


def check(rows: dict[str, dict[str, str]], made: dict[str, str]) -> None:
    assert set(rows) == set(made)  # one row per study: chest ones and skipped ones
    for uid, what in made.items():
        row = rows[uid]
        if what == "chest":
            assert (row["state"], row["status"], row["Edema"]) == ("done", "mock", "1"), row
        else:
            assert row["state"] == "skipped" and what in row["reason"], row


def inferences_per_study(serve: Serve) -> Counter[str]:
    with db_for(serve.data_dir).session() as s:
        rows = s.execute(select(Job.study_instance_uid).join(
            JobEvent, JobEvent.job_id == Job.id).where(JobEvent.state == "inferring")).all()
    return Counter(uid for (uid,) in rows)


@pytest.fixture
def gateway(serve_factory) -> Serve:  # type: ignore[no-untyped-def]
    return serve_factory.new({"CXR_MOCK_LABELS": "Edema", "CXR_MOCK_LATENCY_SECONDS": "0.2"})


@pytest.mark.timeout(600)
def test_pacs_by_cfind_and_cmove_killed_halfway_and_rerun(gateway: Serve,
                                                          tmp_path: Path) -> None:
    orthanc = Orthanc(tmp_path, gateway_port=gateway.port)
    try:
        made = studies(tmp_path / "archive", chest=3, small=12)
        for path in sorted((tmp_path / "archive").iterdir()):
            orthanc.rest("POST", "/instances", path.read_bytes())
        gateway.start()
        env = {"CXR_SOURCE_PACS": f"ORTHANC@127.0.0.1:{orthanc.dicom_port}"}
        first = batch(gateway, "pacs", "--name", "archive", "--chunk", "2", env=env, wait=False)
        assert isinstance(first, subprocess.Popen)
        db = db_for(gateway.data_dir)
        deadline = time.monotonic() + 180
        done = 0
        while time.monotonic() < deadline:
            with db.session() as s:
                done = s.scalar(select(func.count()).select_from(BatchItem).where(
                    BatchItem.state.in_(("done", "skipped")))) or 0
            if done >= 5:
                break
            time.sleep(0.2)
        assert 5 <= done < len(made), f"{done} of {len(made)} done when the kill came"
        first.send_signal(signal.SIGKILL)  # halfway, with studies in flight
        first.wait(timeout=30)
        second = batch(gateway, "pacs", "--name", "archive", "--chunk", "2", env=env)
        assert isinstance(second, subprocess.CompletedProcess)
        assert second.returncode == 0, second.stdout + second.stderr
        out = gateway.data_dir / "batches" / "archive"
        check(predictions(out / "predictions.csv"), made)
        counted = inferences_per_study(gateway)
        chest = {u for u, w in made.items() if w == "chest"}
        assert set(counted) == chest and set(counted.values()) == {1}, counted
        with db.session() as s:  # batch studies wait behind live traffic
            assert set(s.scalars(select(Job.priority))) == {9}
            assert None not in set(s.scalars(select(Job.batch_run_id)))
        responses = (out / "responses.jsonl").read_text().splitlines()
        assert len(responses) == len(chest) and "MOCK" in json.loads(responses[0])[
            "findings_text"]
        status = subprocess.run([str(BIN / "cxr-gateway"), "batch", "status", "archive",
                                 "--json", "--data-dir", str(gateway.data_dir)],
                                capture_output=True, text=True, timeout=60)
        shown = json.loads(status.stdout)
        assert shown["finished"] == shown["total"] == len(made)
    finally:
        orthanc.stop()


@pytest.mark.timeout(400)
def test_dicomweb_qido_and_wado(gateway: Serve, tmp_path: Path) -> None:
    orthanc = Orthanc(tmp_path)
    try:
        made = studies(tmp_path / "archive", chest=2)
        for path in sorted((tmp_path / "archive").iterdir()):
            orthanc.rest("POST", "/instances", path.read_bytes())
        gateway.start()
        run = batch(gateway, f"{orthanc.url}/dicom-web", "--name", "web")
        assert isinstance(run, subprocess.CompletedProcess)
        assert run.returncode == 0, run.stdout + run.stderr
        check(predictions(gateway.data_dir / "batches" / "web" / "predictions.csv"), made)
        again = batch(gateway, f"{orthanc.url}/dicom-web", "--name", "web-again")
        assert isinstance(again, subprocess.CompletedProcess) and again.returncode == 0
        # the second run found every result already made with the same settings
        assert set(inferences_per_study(gateway).values()) == {1}
    finally:
        orthanc.stop()


@pytest.mark.timeout(400)
def test_folder_and_image_csv(gateway: Serve, tmp_path: Path) -> None:
    made = studies(tmp_path / "tree" / "a" / "b", chest=1, small=3)
    gateway.start()
    run = batch(gateway, str(tmp_path / "tree"), "--name", "folder")
    assert isinstance(run, subprocess.CompletedProcess)
    assert run.returncode == 0, run.stdout + run.stderr
    check(predictions(gateway.data_dir / "batches" / "folder" / "predictions.csv"), made)
    # PNG studies named by a CSV (CheXpert's layout), one with only a lateral image
    images = tmp_path / "images"
    png = convert_dataset(dcmread(sample_file("RG1_UNCR.dcm"))).png
    rows = []
    for study, view in (("p1/s1", "Frontal"), ("p1/s1", "Lateral"), ("p2/s1", "Frontal"),
                        ("p3/s1", "Lateral")):
        path = images / study / f"{view.lower()}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(png)
        rows.append({"Path": f"{study}/{view.lower()}.png", "Frontal/Lateral": view})
    listing = images / "list.csv"
    with listing.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["Path", "Frontal/Lateral"])
        writer.writeheader()
        writer.writerows(rows)
    run = batch(gateway, str(listing), "--name", "pngs")
    assert isinstance(run, subprocess.CompletedProcess)
    assert run.returncode == 0, run.stdout + run.stderr
    with (gateway.data_dir / "batches" / "pngs" / "predictions.csv").open() as fh:
        by_study = {r["study_id"]: r for r in csv.DictReader(fh)}
    assert set(by_study) == {"p1/s1", "p2/s1", "p3/s1"}
    assert by_study["p1/s1"]["state"] == by_study["p2/s1"]["state"] == "done"
    assert by_study["p3/s1"]["state"] == "skipped" and "lateral" in by_study["p3/s1"]["reason"]


def test_a_rerun_waits_for_the_first_runs_job_still_in_flight(tmp_path: Path) -> None:
    """After a kill, the rerun fetches a study again whose job (from the first run) is still
    working: the rerun must wait for that job's result, not call the study skipped."""
    from worker.research.batch import FETCHED, Batch, BatchOptions
    from worker.runtime import configure
    from worker.settings import load_settings
    from worker.store.db import Study, now

    rt = configure(load_settings(None, {"CXR_MOCK_LABELS": "Edema"},
                                 data_dir=tmp_path / "data"))
    study_uid = generate_uid()
    run = Batch(rt, BatchOptions(name="rerun", source=str(tmp_path), kind="folder"),
                publish_infer=lambda _j, _v: None)
    t = now()
    with rt.db.session() as s:
        s.add(Study(study_instance_uid=study_uid, first_received_at=t - 60,
                    last_received_at=t - 60, assembled_at=t - 50, outcome="admitted 1.2.3"))
        job = Job(study_instance_uid=study_uid, version=1, sop_instance_uid="1.2.3",
                  state="inferring", created_at=t - 50, updated_at=t - 50, source_header="{}",
                  priority=9, batch_run_id=None)
        s.add(job)
        s.add(BatchItem(run_id=run.run.id, study_key=study_uid, study_instance_uid=study_uid,
                        state=FETCHED,
                        fetched_at=t))  # fetched again by the rerun, after the job began
        s.commit()
        job_id = job.id
    assert run.follow() == 0  # still inferring: nothing settled, nothing skipped
    with rt.db.session() as s:
        assert s.scalar(select(BatchItem.state)) == FETCHED
        done = s.get(Job, job_id)
        assert done is not None
        done.state = "done"
        done.conversion = rt.settings.conversion
        backend, made_by = run.key.split("|", 1)  # the same model settings as this run
        model_id, revision = made_by.rsplit("@", 1)
        done.result = json.dumps({"backend": backend, "model_id": model_id,
                                  "model_revision": revision, "prompt": run.run.prompt})
        s.commit()
    assert run.follow() == 1
    with rt.db.session() as s:
        item = s.scalar(select(BatchItem))
        assert item is not None and (item.state, item.job_id) == ("done", job_id)


# -- reruns on real backends reuse every result -------------------------------------------

READING = ("state", "status", *CHEXPERT_LABELS, "model_id", "model_revision", "backend",
           "job_id")


def reading(rows: dict[str, dict[str, str]]) -> dict[str, tuple[str, ...]]:
    """What a predictions file says about each study (its job and what the model read)."""
    return {uid: tuple(row[f] for f in READING) for uid, row in rows.items()}


def run_twice(srv: Serve, source: Path) -> tuple[dict[str, dict[str, str]],
                                                 dict[str, dict[str, str]]]:
    """A batch over ``source``, then a second batch (another name) over the same source."""
    out = []
    for name in ("first", "again"):
        run = batch(srv, str(source), "--name", name)
        assert isinstance(run, subprocess.CompletedProcess)
        assert run.returncode == 0, run.stdout + run.stderr
        out.append(predictions(srv.data_dir / "batches" / name / "predictions.csv"))
    return out[0], out[1]


def algorithm_versions(sr: Dataset) -> list[str]:
    return [i.TextValue for i in find_content_items(sr, value_type="TEXT", recursive=True)
            if i.ConceptNameCodeSequence[0].CodeValue == "111003"]  # Algorithm Version


@pytest.mark.timeout(600)
def test_a_second_batch_on_a_vllm_server_asks_it_nothing(
        serve_factory: Any, vllm_standin: VLLMStandin, tmp_path: Path) -> None:
    """The openai backend's identity is the revision the server reports (a snapshot root),
    the same for the gateway's batch and the GPU worker: the second batch reuses every
    result and sends the server no model request; the SR names the revision, no URL."""
    vllm_standin.reset(root=SNAPSHOT_ROOT)
    made = studies(tmp_path / "source", chest=0, small=6)
    chest = {uid for uid, what in made.items() if what == "chest"}
    srv = serve_factory.new(backend_env("openai", standin_url=vllm_standin.url)).start()
    run = batch(srv, str(tmp_path / "source"), "--name", "first")
    assert isinstance(run, subprocess.CompletedProcess)
    assert run.returncode == 0, run.stdout + run.stderr
    asked = vllm_standin.chat_requests()
    assert Counter(r.turn for r in asked) == {"findings": len(chest), "report": len(chest)}
    images = {r.image_sha256 for r in vllm_standin.chat_requests("findings")}
    assert len(images) == len(chest)  # every study's own image, each once
    first = predictions(srv.data_dir / "batches" / "first" / "predictions.csv")
    read = Counter(frozenset(lab for lab in CHEXPERT_LABELS if first[uid][lab] == "1")
                   for uid in chest)
    assert read == Counter(frozenset(labels_for(str(sha))) for sha in images)
    assert {first[uid]["model_revision"] for uid in chest} == {PINNED_REVISION}
    with db_for(srv.data_dir).session() as s:
        sr_paths = [p for (p,) in s.execute(select(Job.sr_path)).all() if p]
    assert len(sr_paths) == len(chest)
    for path in sr_paths:
        raw = Path(path).read_bytes()
        versions = algorithm_versions(dcmread(path))
        assert versions and set(versions) == {f"hf:nvidia/NV-Reason-CXR-3B@{PINNED_REVISION}"}
        assert b"127.0.0.1" not in raw and str(vllm_standin.port).encode() not in raw

    vllm_standin.reset()  # the second batch's own record
    again = batch(srv, str(tmp_path / "source"), "--name", "again")
    assert isinstance(again, subprocess.CompletedProcess)
    assert again.returncode == 0, again.stdout + again.stderr
    assert vllm_standin.chat_requests() == []
    second = predictions(srv.data_dir / "batches" / "again" / "predictions.csv")
    assert reading(second) == reading(first)  # the same jobs, the same readings
    assert set(inferences_per_study(srv).values()) == {1}


@pytest.mark.timeout(600)
def test_a_second_batch_on_a_non_default_local_model_infers_nothing(
        serve_factory: Any, tiny_qwen_labels: Path, tmp_path: Path) -> None:
    """A model by path, with no revision anywhere: "unpinned" on both sides, so the
    second batch reuses every result instead of inferring again."""
    made = studies(tmp_path / "source", chest=0, small=4)
    chest = {uid for uid, what in made.items() if what == "chest"}
    srv = serve_factory.new(backend_env("local", checkpoint=tiny_qwen_labels)).start()
    first, second = run_twice(srv, tmp_path / "source")
    counted = inferences_per_study(srv)
    assert set(counted) == chest and set(counted.values()) == {1}, counted
    for uid in chest:
        assert (first[uid]["state"], first[uid]["status"], first[uid]["Edema"],
                first[uid]["model_revision"]) == ("done", "ok", "1", "unpinned"), first[uid]
    assert reading(second) == reading(first)
    with db_for(srv.data_dir).session() as s:
        assert s.scalar(select(func.count()).select_from(Job)) == len(chest)
