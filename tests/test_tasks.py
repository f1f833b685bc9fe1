"""Task wrappers: an unexpected error fails the job with its reason; redelivery is a no-op."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from tests.dicom_factory import make_cr, save
from worker import assembler, jobs, pipeline, tasks
from worker.db import Instance, Job, Study, now
from worker.runtime import Runtime, configure
from worker.settings import load_settings


@pytest.fixture
def rt(tmp_path: Path) -> Runtime:
    return configure(load_settings(None, {}, data_dir=tmp_path / "data"))


def queued_job(rt: Runtime, tmp_path: Path) -> Job:
    ds = make_cr()
    path = save(ds, tmp_path / "cr.dcm")
    with rt.db.session() as s:
        s.add(Study(study_instance_uid=ds.StudyInstanceUID, first_received_at=now(),
                    last_received_at=now() - 100))
        s.add(Instance(sop_instance_uid=ds.SOPInstanceUID, sop_class_uid=ds.SOPClassUID,
                       study_instance_uid=ds.StudyInstanceUID, path=str(path),
                       size=path.stat().st_size, sha256="0" * 64, received_at=now()))
        s.commit()
    job_id = assembler.assemble_study(rt.db, ds.StudyInstanceUID, 60)
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


def test_redelivered_stages_do_nothing_once_past(rt: Runtime, tmp_path: Path) -> None:
    job = queued_job(rt, tmp_path)
    prepared = pipeline.prepare(rt, job.id, job.version)
    assert prepared is not None
    assert pipeline.infer(rt, prepared)
    assert pipeline.report(rt, job.id, job.version)
    assert pipeline.deliver(rt, job.id, job.version)  # no destinations: done
    # every stage again, as a redelivered message would run it
    assert pipeline.prepare(rt, job.id, job.version) is None
    assert not pipeline.infer(rt, prepared)
    assert not pipeline.report(rt, job.id, job.version)
    assert not pipeline.deliver(rt, job.id, job.version)
    with rt.db.session() as s:
        states = [e.state for e in jobs.timeline(s, job.id)]
        row = s.scalar(select(Job))
    assert states == ["received", "queued", "preparing", "inferring", "reporting",
                      "delivering", "done"]
    assert row is not None and row.state == "done"
    assert len(list((rt.settings.outbox_dir).rglob("*.dcm"))) == 1
