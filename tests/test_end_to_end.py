"""The walking skeleton end to end, with real peers: dcmtk storescu -> serve -> storescp."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from highdicom.sr.utils import find_content_items
from pydicom import dcmread
from pydicom.uid import generate_uid
from sqlalchemy import select

from tests.peers import BIN, StoreSCP, dciodvfy_errors, sample_file
from worker.db import Database, Instance, Job, Study

pytestmark = pytest.mark.integration


def db_for(data_dir: Path) -> Database:
    return Database(f"sqlite:///{data_dir / 'gateway.db'}")


def wait_job(data_dir: Path, study_uid: str, states: tuple[str, ...],
             timeout: float = 60.0) -> Job:
    db = db_for(data_dir)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with db.session() as s:
            job = s.scalar(select(Job).where(Job.study_instance_uid == study_uid))
            if job is not None and job.state in states:
                return job
        time.sleep(0.2)
    raise TimeoutError(f"no job for {study_uid} in {states}")


def wait_assembled(data_dir: Path, study_uid: str, timeout: float = 60.0) -> Study:
    db = db_for(data_dir)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with db.session() as s:
            st = s.scalar(select(Study).where(Study.study_instance_uid == study_uid))
            if st is not None and st.assembled_at is not None:
                return st
        time.sleep(0.2)
    raise TimeoutError(f"study {study_uid} never assembled")


def assert_stored(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, result.stderr
    assert "Store Response (Success)" in result.stderr, result.stderr


def test_rg1_in_sr_out_to_storescp(serve_factory, storescp: StoreSCP, rg1: Path) -> None:
    srv = serve_factory.new({"CXR_DESTINATIONS": storescp.destination}).start()
    assert_stored(srv.storescu(rg1, extra=("-v",)))
    (sr_path,) = storescp.wait_files(1)
    sr = dcmread(sr_path)
    src = dcmread(rg1, stop_before_pixels=True)
    assert sr.Modality == "SR"
    assert sr.StudyInstanceUID == src.StudyInstanceUID
    assert sr.SeriesInstanceUID != src.SeriesInstanceUID
    refs = [item.ReferencedSOPInstanceUID
            for study in sr.CurrentRequestedProcedureEvidenceSequence
            for series in study.ReferencedSeriesSequence
            for item in series.ReferencedSOPSequence]
    assert refs == [src.SOPInstanceUID]
    # the research-only marking, on independent attributes
    assert sr.PreliminaryFlag == "PRELIMINARY"
    assert sr.VerificationFlag == "UNVERIFIED"
    assert sr.CompletionFlag == "PARTIAL"
    assert "RESEARCH ONLY" in sr.SeriesDescription
    assert "MOCK" in sr.SeriesDescription  # the mock backend says so
    assert dciodvfy_errors(sr_path) == []
    job = wait_job(srv.data_dir, src.StudyInstanceUID, ("done",))
    assert job.sr_sop_instance_uid == sr.SOPInstanceUID
    assert Path(job.sr_path).exists()  # the outbox copy
    assert job.conversion.startswith("mimic-v1")
    assert (srv.data_dir / "previews" / f"job-{job.id}-v1.png").is_file()
    params = [i.TextValue for i in find_content_items(sr, value_type="TEXT", recursive=True)
              if i.ConceptNameCodeSequence[0].CodeValue == "111002"]  # Algorithm Parameters
    assert "conversion=mimic-v1" in params


def _identity(sr_path: Path) -> tuple[str, str, str]:
    sr = dcmread(sr_path)
    (observer,) = [i.UID for i in find_content_items(sr, value_type="UIDREF", recursive=True)
                   if i.ConceptNameCodeSequence[0].CodeValue == "121012"]  # Device Observer
    return str(sr.SOPInstanceUID), str(sr.SeriesInstanceUID), str(observer)


def test_two_installations_give_the_same_study_different_sr_uids(
        serve_factory, storescp: StoreSCP, rg1: Path, tmp_path: Path) -> None:
    """Two data directories (two installations, or a reset database) never reuse a UID."""
    identities = []
    for n in (1, 2):
        srv = serve_factory.new({"CXR_DESTINATIONS": storescp.destination},
                                data_dir=tmp_path / f"gateway{n}").start()
        assert_stored(srv.storescu(rg1, extra=("-v",)))
        files = storescp.wait_files(n)
        identities.append(_identity(max(files, key=lambda p: p.stat().st_mtime)))
        srv.stop()
    first, second = identities
    assert all(a != b for a, b in zip(first, second, strict=True)), identities


def _lateral_copy(rg1: Path, out: Path) -> Path:
    ds = dcmread(rg1)
    ds.ViewPosition = "LL"
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(out, enforce_file_format=True)
    return out


@pytest.mark.parametrize(
    ("name", "expected_reason"),
    [
        ("RG3_UNCR.dcm", "not chest"),
        ("US1_UNCR.dcm", "not a radiograph"),
        ("lateral", "lateral view"),
    ],
)
def test_non_frontal_chest_is_skipped_with_reason(
    serve_factory, storescp: StoreSCP, rg1: Path, tmp_path: Path, name: str,
    expected_reason: str,
) -> None:
    path = _lateral_copy(rg1, tmp_path / "lateral.dcm") if name == "lateral" else sample_file(name)
    srv = serve_factory.new({"CXR_DESTINATIONS": storescp.destination}).start()
    assert_stored(srv.storescu(path, extra=("-v",)))
    study_uid = dcmread(path, stop_before_pixels=True).StudyInstanceUID
    study = wait_assembled(srv.data_dir, study_uid)
    assert expected_reason in study.outcome
    with db_for(srv.data_dir).session() as s:
        inst = s.scalar(select(Instance).where(Instance.study_instance_uid == study_uid))
        assert inst is not None and inst.admission == "skipped"
        assert expected_reason in inst.skip_reason
        assert s.scalar(select(Job).where(Job.study_instance_uid == study_uid)) is None
    time.sleep(1.0)
    assert storescp.files() == []


def test_sigkill_after_ack_still_produces_the_sr(
    serve_factory, storescp: StoreSCP, rg1: Path
) -> None:
    env = {"CXR_DESTINATIONS": storescp.destination, "CXR_STUDY_QUIET_SECONDS": "3"}
    srv = serve_factory.new(env).start()
    assert_stored(srv.storescu(rg1, extra=("-v",)))
    srv.kill()  # right after the success answer, well inside the quiet period
    assert storescp.files() == []
    with db_for(srv.data_dir).session() as s:
        assert s.scalar(select(Job)) is None  # nothing had started yet
        assert s.scalar(select(Instance)) is not None
    srv.start()
    (sr_path,) = storescp.wait_files(1)
    source = dcmread(rg1, stop_before_pixels=True)
    assert dcmread(sr_path).StudyInstanceUID == source.StudyInstanceUID


def test_sigkill_mid_pipeline_resumes_with_one_sr(
    serve_factory, storescp: StoreSCP, rg1: Path
) -> None:
    """Killed while the job is in flight: the restart resumes it, and the SR UID is stable."""
    env = {"CXR_DESTINATIONS": storescp.destination, "CXR_MOCK_LATENCY_SECONDS": "3"}
    srv = serve_factory.new(env).start()
    assert_stored(srv.storescu(rg1, extra=("-v",)))
    study_uid = dcmread(rg1, stop_before_pixels=True).StudyInstanceUID
    wait_job(srv.data_dir, study_uid, ("inferring",))
    srv.kill()
    assert storescp.files() == []
    srv.start()
    job = wait_job(srv.data_dir, study_uid, ("done",))
    storescp.wait_files(1)
    time.sleep(2)  # a second delivery, if there were one, would arrive in this time
    # storescp keeps every delivery in its own file: exactly one, with the job's UID
    assert storescp.delivered_uids() == [job.sr_sop_instance_uid]


def test_demo_command_prints_a_full_timeline(tmp_path: Path) -> None:
    out = subprocess.run([str(BIN / "cxr-gateway"), "demo", "--data-dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    for stage in ("received", "queued", "preparing", "inferring", "reporting", "delivering"):
        row = next(ln for ln in lines if ln.strip().startswith(stage))
        assert float(row.split()[1]) > 0, row
    assert any(ln.strip().startswith("done") for ln in lines)
    sr_line = next(ln for ln in lines if ln.strip().startswith("SR:"))
    assert Path(sr_line.split("SR:", 1)[1].strip()).is_file()
