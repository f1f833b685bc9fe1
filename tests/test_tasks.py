"""Task wrappers: an unexpected error fails the job with its reason; redelivery is a no-op."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from tests.dicom_factory import make_cr, save
from worker.ingest import assembler
from worker.pipeline import stages as pipeline
from worker.pipeline import tasks
from worker.runtime import Runtime, configure
from worker.settings import load_settings
from worker.store import jobs
from worker.store.db import Instance, Job, Study, now


@pytest.fixture
def rt(tmp_path: Path) -> Runtime:
    return configure(load_settings(None, {}, data_dir=tmp_path / "data"))


def queued_job(rt: Runtime, tmp_path: Path, name: str = "cr") -> Job:
    """A one-instance study, received and assembled: its job, queued."""
    ds = make_cr()
    path = save(ds, tmp_path / f"{name}.dcm")
    with rt.db.session() as s:
        s.add(Study(study_instance_uid=ds.StudyInstanceUID, first_received_at=now(),
                    last_received_at=now() - 100))
        s.add(Instance(sop_instance_uid=ds.SOPInstanceUID, sop_class_uid=ds.SOPClassUID,
                       study_instance_uid=ds.StudyInstanceUID, path=str(path),
                       size=path.stat().st_size, sha256="0" * 64, received_at=now()))
        s.commit()
    job_id = assembler.assemble_study(rt.db, ds.StudyInstanceUID)
    assert job_id is not None
    with rt.db.session() as s:
        job = s.get(Job, job_id)
        assert job is not None
        return job


def test_unexpected_error_fails_the_job_with_its_reason(rt: Runtime, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    job = queued_job(rt, tmp_path)

    def boom(*_a: object, **_k: object) -> None:
        raise RuntimeError("decoder exploded")

    monkeypatch.setattr(pipeline, "convert_file", boom)
    tasks.prepare.run(job.id, job.version)
    with rt.db.session() as s:
        row = s.get(Job, job.id)
        assert row is not None and row.state == jobs.FAILED
        assert row.reason == "prepare failed: RuntimeError: decoder exploded"


def test_a_message_kombu_cannot_publish_leaves_the_job_waiting_not_failed(
        rt: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """kombu's Redis transport, its connection lost under a publisher, can raise an
    AttributeError instead of its OperationalError (seen across a Redis restart under
    load): the study waits for the lost-message sweep instead of failing."""
    from kombu.exceptions import OperationalError

    from worker.pipeline.reconciler import Reconciler

    job = queued_job(rt, tmp_path)
    sent: list[tuple[object, ...]] = []

    def closed_channel(*_a: object, **_k: object) -> None:
        raise AttributeError("'NoneType' object has no attribute 'client'")

    monkeypatch.setattr(tasks.infer, "apply_async", closed_channel)
    with pytest.raises(OperationalError, match="not published: AttributeError"):
        tasks.enqueue_infer(job.id, job.version)
    tasks.prepare.run(job.id, job.version)  # converts, then cannot publish the inference
    with rt.db.session() as s:
        row = s.get(Job, job.id)
        assert row is not None
        assert (row.state, row.reason, row.enqueued_at) == (jobs.PREPARED, "", 0.0)
    # the broker back: the sweep of lost messages sends the inference message
    publishers = tasks.PUBLISHERS
    monkeypatch.setattr(publishers, "infer", lambda j, v: sent.append(("infer", j, v)))
    sweep = Reconciler(rt.db, rt.settings, publishers, queue_depth=lambda _q: 0).run(
        force=True)
    assert sweep.republished == [job.id]
    assert sent == [("infer", job.id, job.version)]


def test_redelivered_stages_do_nothing_once_past(rt: Runtime, tmp_path: Path) -> None:
    job = queued_job(rt, tmp_path)
    assert pipeline.prepare(rt, job.id, job.version)
    assert pipeline.infer_batch(rt, job.id, job.version) == [(job.id, job.version)]
    assert pipeline.report(rt, job.id, job.version)
    assert pipeline.deliver(rt, job.id, job.version)  # no destinations: done
    # every stage again, as a redelivered message would run it
    assert not pipeline.prepare(rt, job.id, job.version)
    assert pipeline.infer_batch(rt, job.id, job.version) == []
    assert not pipeline.report(rt, job.id, job.version)
    assert not pipeline.deliver(rt, job.id, job.version)
    with rt.db.session() as s:
        states = [e.state for e in jobs.timeline(s, job.id)]
        row = s.scalar(select(Job))
    assert states == ["received", "queued", "preparing", "prepared", "inferring", "reporting",
                      "delivering", "done"]
    assert row is not None and row.state == "done"
    assert len(list((rt.settings.outbox_dir).rglob("*.dcm"))) == 1


def test_gpu_batch_takes_live_before_batch_and_respects_size(
        rt: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    made = []
    for i in range(4):
        (tmp_path / f"j{i}").mkdir()
        job = queued_job(rt, tmp_path / f"j{i}")
        assert pipeline.prepare(rt, job.id, job.version)
        made.append(job)
    with rt.db.session() as s:  # the first two are retrospective batch work
        for job in made[:2]:
            row = s.get(Job, job.id)
            assert row is not None
            row.priority = 9
        s.commit()
    monkeypatch.setattr(rt, "settings", rt.settings.replace(gpu_batch_size=3,
                                                             gpu_batch_wait_seconds=0))
    done = pipeline.infer_batch(rt, made[0].id, 1)
    # the triggering job, then live jobs (priority 0) before the other batch job
    assert [j for j, _ in done] == [made[0].id, made[2].id, made[3].id]
    with rt.db.session() as s:
        assert s.get(Job, made[1].id).state == jobs.PREPARED  # type: ignore[union-attr]


@pytest.mark.integration  # the CLI as a subprocess
def test_jobs_show_has_the_timeline(rt: Runtime, tmp_path: Path) -> None:
    import json
    import subprocess

    from tests.peers import BIN

    job = queued_job(rt, tmp_path)
    assert pipeline.prepare(rt, job.id, job.version)
    out = subprocess.run([str(BIN / "cxr-gateway"), "jobs", "show", str(job.id), "--json",
                          "--data-dir",
                          str(rt.settings.data_dir)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    shown = json.loads(out.stdout)
    assert [t["state"] for t in shown["timeline"]] == ["received", "queued", "preparing",
                                                       "prepared"]
    from datetime import datetime

    assert all(datetime.fromisoformat(t["at"]).timestamp() > 0 for t in shown["timeline"])
    listed = subprocess.run([str(BIN / "cxr-gateway"), "jobs", "list", "--data-dir",
                             str(rt.settings.data_dir)], capture_output=True, text=True)
    assert "prepared" in listed.stdout


@pytest.mark.integration  # the CLI as a subprocess
def test_jobs_retry_requeues_failed_jobs(rt: Runtime, tmp_path: Path) -> None:
    import subprocess

    from tests.peers import BIN

    job = queued_job(rt, tmp_path)
    pipeline.fail(rt, job.id, job.version, "conversion failed: test")
    cmd = [str(BIN / "cxr-gateway"), "jobs", "retry", "--failed", "--data-dir",
           str(rt.settings.data_dir)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "re-queued 1 job(s)" in out.stdout, out.stderr
    with rt.db.session() as s:
        row = s.get(Job, job.id)
        assert row is not None and (row.state, row.reason, row.attempts) == ("queued", "", 0)
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert again.returncode == 2 and "nothing to retry" in again.stderr


def test_skipped_files_are_purged_after_retention(rt: Runtime, tmp_path: Path) -> None:
    from worker.store.retention import purge_skipped

    paths = []
    with rt.db.session() as s:
        for age, admission in ((7200, "skipped"), (60, "skipped"), (7200, "admitted")):
            ds = make_cr()
            path = save(ds, tmp_path / f"{admission}-{age}.dcm")
            paths.append(path)
            s.add(Instance(sop_instance_uid=ds.SOPInstanceUID, sop_class_uid=ds.SOPClassUID,
                           study_instance_uid=ds.StudyInstanceUID, path=str(path),
                           size=1, sha256="0" * 64, received_at=now() - age,
                           admission=admission, skip_reason="lateral view (ViewPosition LL)"))
        s.commit()
    assert purge_skipped(rt.db, retention_seconds=3600) == 1
    assert [p.exists() for p in paths] == [False, True, True]
    with rt.db.session() as s:
        old = s.scalar(select(Instance).where(Instance.path == str(paths[0])))
        assert old is not None and old.purged_at is not None and old.skip_reason  # row kept
    assert purge_skipped(rt.db, retention_seconds=3600) == 0


def test_a_repeated_report_task_writes_the_same_sr(rt: Runtime, tmp_path: Path) -> None:
    from sqlalchemy import update

    job = queued_job(rt, tmp_path)
    assert pipeline.prepare(rt, job.id, job.version)
    assert pipeline.infer_batch(rt, job.id, job.version)
    assert pipeline.report(rt, job.id, job.version)
    with rt.db.session() as s:
        first = s.get(Job, job.id)
        assert first is not None
        s.execute(update(Job).where(Job.id == job.id).values(state=jobs.REPORTING, holder=""))
        s.commit()  # the same task once more, as after a lost acknowledgement
    assert pipeline.report(rt, job.id, job.version)
    with rt.db.session() as s:
        again = s.get(Job, job.id)
        assert again is not None
    assert again.sr_sop_instance_uid == first.sr_sop_instance_uid
    assert [p.name for p in rt.settings.outbox_dir.rglob("*.dcm")] == [
        f"{first.sr_sop_instance_uid}.dcm"]


def inferred_result(rt: Runtime, tmp_path: Path) -> dict[str, object]:
    """A new job taken through prepare and inference; its stored result."""
    import json

    job = queued_job(rt, tmp_path)
    assert pipeline.prepare(rt, job.id, job.version)
    assert pipeline.infer_batch(rt, job.id, job.version)
    with rt.db.session() as s:
        row = s.get(Job, job.id)
        assert row is not None and row.result is not None
        result: dict[str, object] = json.loads(row.result)
    return result


def test_default_mock_result_is_mock_with_no_labels_and_no_report(rt: Runtime,
                                                                 tmp_path: Path) -> None:
    result = inferred_result(rt, tmp_path)
    assert (result["status"], result["labels"], result["report_text"]) == ("mock", [], "")
    assert result["model_revision"] == "056bd0383b35226554da9dc5866e095df174ae19"


def test_mock_labels_are_named_by_a_setting(tmp_path: Path) -> None:
    rt = configure(load_settings(None, {"CXR_MOCK_LABELS": "Edema, Pneumothorax"},
                                 data_dir=tmp_path / "data"))
    result = inferred_result(rt, tmp_path)
    assert result["status"] == "mock" and result["labels"] == ["Edema", "Pneumothorax"]
    assert result["report_sections"]  # the report turn ran after an answer with labels
    with pytest.raises(Exception, match="CXR_MOCK_LABELS"):
        load_settings(None, {"CXR_MOCK_LABELS": "Pleural_Effusion"})


def _tracking(path: Path) -> list[tuple[str, str]]:
    """Each finding group's TID 4108 tracking identifier and UID, read back by highdicom."""
    import highdicom as hd

    sr = hd.sr.srread(path)
    return [(str(g.tracking_identifier), str(g.tracking_uid))
            for g in sr.content.get_image_measurement_groups()]


def test_each_finding_carries_a_tracking_id_kept_by_a_repeat_and_new_in_a_new_version(
        tmp_path: Path) -> None:
    """AIR's tracking primitive: a repeated report task writes the same identifiers and
    UIDs; the study's next version (a better image arrived) tracks its findings anew."""
    from sqlalchemy import update

    from tests.dicom_factory import make_cr

    rt = configure(load_settings(None, {"CXR_MOCK_LABELS": "Edema, Pneumothorax"},
                                 data_dir=tmp_path / "data"))
    job = queued_job(rt, tmp_path)

    def run(job_id: int, version: int) -> Path:
        assert pipeline.prepare(rt, job_id, version)
        assert pipeline.infer_batch(rt, job_id, version)
        assert pipeline.report(rt, job_id, version)
        with rt.db.session() as s:
            row = s.get(Job, job_id)
            assert row is not None and row.sr_path
            return Path(row.sr_path)

    first = _tracking(run(job.id, job.version))
    assert [ident for ident, _ in first] == ["CheXpert label 1: Edema",
                                             "CheXpert label 2: Pneumothorax"]
    assert len({uid for _, uid in first}) == 2
    with rt.db.session() as s:  # the same task once more, as after a lost acknowledgement
        s.execute(update(Job).where(Job.id == job.id).values(state=jobs.REPORTING, holder=""))
        s.commit()
    assert pipeline.report(rt, job.id, job.version)
    with rt.db.session() as s:
        row = s.get(Job, job.id)
        assert row is not None
        assert _tracking(Path(row.sr_path)) == first
        study_uid = row.study_instance_uid
    # a better image, late (a higher InstanceNumber wins a tie of PA views): version 2
    pa = make_cr(study_uid, view="PA", seed=2, number=2)
    path = save(pa, tmp_path / "pa.dcm")
    with rt.db.session() as s:
        s.add(Instance(sop_instance_uid=pa.SOPInstanceUID, sop_class_uid=pa.SOPClassUID,
                       study_instance_uid=study_uid, path=str(path),
                       size=path.stat().st_size, sha256="0" * 64, received_at=now()))
        s.execute(update(Study).where(Study.study_instance_uid == study_uid)
                  .values(assembled_at=None))
        s.commit()
    second_id = assembler.assemble_study(rt.db, study_uid)
    assert second_id is not None
    with rt.db.session() as s:
        second_job = s.get(Job, second_id)
        assert second_job is not None and second_job.version == 2
    second = _tracking(run(second_id, 2))
    assert [ident for ident, _ in second] == [ident for ident, _ in first]
    assert not {uid for _, uid in second} & {uid for _, uid in first}
