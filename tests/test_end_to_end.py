"""The walking skeleton end to end, with real peers: dcmtk storescu -> serve -> storescp."""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from highdicom.sr.utils import find_content_items
from pydicom import Dataset, dcmread
from pydicom.uid import generate_uid
from sqlalchemy import select

from dicom_gateway.documents import codes as sr_codes
from models.parsing import parse_output
from tests.peers import (
    BACKENDS,
    BIN,
    SlowModel,
    StoreSCP,
    backend_env,
    dciodvfy_errors,
    pixelmed_errors,
    sample_file,
)
from tests.random_qwen import ForcedReplies
from tests.vllm_standin import VLLMStandin, findings_text, labels_for, report_text
from worker.store.db import Database, Delivery, Instance, Job, Study

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


@dataclass
class ModelPeer:
    """The model side of one end-to-end run: the serve environment, what the SR must say,
    and (openai) the stand-in server whose record shows what it was asked."""

    name: str
    env: dict[str, str]
    standin: VLLMStandin | None = None
    forced: ForcedReplies | None = None

    def expected(self) -> tuple[tuple[str, ...], str, str]:
        """The labels, the findings reply and the report reply this run must deliver."""
        if self.forced is not None:
            return self.forced.labels, self.forced.findings, self.forced.report
        assert self.standin is not None
        (first,) = self.standin.chat_requests("findings")
        assert first.image_sha256 is not None
        labels = labels_for(first.image_sha256)
        return labels, findings_text(labels), report_text(labels)


@pytest.fixture(params=BACKENDS)
def model_peer(request: pytest.FixtureRequest) -> ModelPeer:
    """Each backend a site runs: the mock, a vLLM server (the stand-in, in this process),
    and Transformers on the tiny Qwen forced to answer with labels (so turn 2 runs)."""
    name = request.param
    if name == "openai":
        standin = request.getfixturevalue("vllm_standin")
        return ModelPeer(name, backend_env(name, standin_url=standin.url), standin=standin)
    if name == "local":
        checkpoint = request.getfixturevalue("tiny_qwen_labels")
        return ModelPeer(name, backend_env(name, checkpoint=checkpoint),
                         forced=ForcedReplies())
    return ModelPeer(name, backend_env(name))


def texts(sr: Dataset, code: str) -> list[str]:
    return [i.TextValue for i in find_content_items(sr, value_type="TEXT", recursive=True)
            if i.ConceptNameCodeSequence[0].CodeValue == code]


def coded_findings(sr: Dataset) -> list[str]:
    return [i.ConceptCodeSequence[0].CodeMeaning
            for i in find_content_items(sr, value_type="CODE", recursive=True)
            if i.ConceptNameCodeSequence[0].CodeValue == "121071"]  # Finding


def assert_reading(sr: Dataset, peer: ModelPeer) -> None:
    """A real backend's SR: its labels coded, the report verbatim and by section, no mock
    marking; for openai, the server saw both turns, the second with the first reply."""
    labels, findings, report = peer.expected()
    assert "MOCK" not in sr.SeriesDescription
    assert coded_findings(sr) == [sr_codes.LABEL_CODES[label].meaning for label in labels]
    assert texts(sr, sr_codes.REPORT_TEXT.value) == [report]
    first_turn = parse_output(findings)
    assert texts(sr, sr_codes.ANSWER.value) == [first_turn.answer]
    assert texts(sr, sr_codes.REASONING.value) == [first_turn.reasoning]
    assert texts(sr, sr_codes.IMPRESSION.value)  # the report's sections became items
    if peer.standin is None:
        return
    assert [r.turn for r in peer.standin.chat_requests()] == ["findings", "report"]
    first, second = peer.standin.chat_requests()
    assert first.image_sha256 == second.image_sha256 and first.status == second.status == 200
    assert [m["role"] for m in second.messages] == ["user", "assistant", "user"]
    assert second.messages[1]["content"] == findings  # the first reply, verbatim
    assert second.messages[0] == first.messages[0]  # the same image and prompt


def test_rg1_in_sr_out_to_storescp(serve_factory, storescp: StoreSCP, rg1: Path,
                                   model_peer: ModelPeer) -> None:
    srv = serve_factory.new({"CXR_DESTINATIONS": storescp.destination,
                             **model_peer.env}).start()
    assert_stored(srv.storescu(rg1, extra=("-v",)))
    (sr_path,) = storescp.wait_files(1, timeout=300)  # the local model loads on a busy CPU
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
    if model_peer.name == "mock":
        assert "MOCK" in sr.SeriesDescription  # the mock backend says so
    else:
        assert_reading(sr, model_peer)
    assert dciodvfy_errors(sr_path) == []
    assert pixelmed_errors(sr_path) == []  # IHE's validator, as an AIR Evidence Creator
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


@pytest.mark.parametrize("model_backend", ["mock", "openai"])
def test_sigkill_mid_pipeline_resumes_with_one_sr(
    serve_factory, storescp: StoreSCP, rg1: Path, model_backend: str,
    request: pytest.FixtureRequest,
) -> None:
    """Killed while the job is in flight (for openai: while the stand-in generates its
    request): the restart resumes it, and the SR UID is stable."""
    model = SlowModel(model_backend, 3.0, request)
    env = {"CXR_DESTINATIONS": storescp.destination, **model.env}
    srv = serve_factory.new(env).start()
    assert_stored(srv.storescu(rg1, extra=("-v",)))
    study_uid = dcmread(rg1, stop_before_pixels=True).StudyInstanceUID
    wait_job(srv.data_dir, study_uid, ("inferring",))
    cut = model.wait_in_flight()
    srv.kill()
    assert storescp.files() == []
    srv.start()
    job = wait_job(srv.data_dir, study_uid, ("done",), timeout=180)
    storescp.wait_files(1)
    with db_for(srv.data_dir).session() as s:  # sends happen only while delivering, each
        # counted: the job is done, so no second one is on its way (no wait for silence)
        assert [d.attempts for d in s.scalars(select(Delivery)).all()] == [1]
    # storescp keeps every delivery in its own file: exactly one, with the job's UID
    assert storescp.delivered_uids() == [job.sr_sop_instance_uid]
    if model.standin is not None:
        # the cut-off findings request, then the job's one complete conversation
        assert [r.turn for r in cut] == ["findings"]
        image = cut[0].image_sha256
        assert model.turns() == [(image, "findings", 200), (image, "findings", 200),
                                 (image, "report", 200)]
    assert job.attempts == 1  # the takeover after the restart, and nothing more


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
