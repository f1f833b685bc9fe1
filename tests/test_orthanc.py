"""The SR delivered to a real Orthanc: C-STORE back to the sender, STOW-RS, and a reject."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom import dcmread
from sqlalchemy import select

from tests.peers import Orthanc
from tests.test_end_to_end import assert_stored, db_for, wait_job
from worker.store.db import Delivery, Job

pytestmark = pytest.mark.integration

SR_3D = "1.2.840.10008.5.1.4.1.1.88.34"
SR_COMPREHENSIVE = "1.2.840.10008.5.1.4.1.1.88.33"


def test_orthanc_sends_rg1_and_gets_the_sr_back_in_the_same_study(
    serve_factory, rg1: Path, tmp_path: Path
) -> None:
    srv = serve_factory.new()
    orthanc = Orthanc(tmp_path, gateway_port=srv.port)
    try:
        # reply to the sending AE (Orthanc), plus a Comprehensive SR fallback to the same PACS
        srv.env["CXR_DESTINATIONS"] = (f"reply:{orthanc.dicom_port},"
                                       f"ORTHANC@127.0.0.1:{orthanc.dicom_port}/comprehensive")
        srv.env["CXR_ALLOWED_CALLING_AETS"] = "ORTHANC"
        srv.start()
        uploaded = orthanc.rest("POST", "/instances", rg1.read_bytes())
        assert isinstance(uploaded, dict)
        orthanc.rest("POST", "/modalities/gateway/store", uploaded["ID"].encode())
        study_uid = dcmread(rg1, stop_before_pixels=True).StudyInstanceUID
        srs = orthanc.wait_for_sr(study_uid, count=2)
        assert sorted(t["SOPClassUID"] for t in srs) == [SR_COMPREHENSIVE, SR_3D]
        assert all("RESEARCH ONLY" in t["SeriesDescription"] for t in srs)
        job = wait_job(srv.data_dir, study_uid, ("done",))
        assert job.sr_sop_instance_uid in {t["SOPInstanceUID"] for t in srs}
        with db_for(srv.data_dir).session() as s:
            states = {d.destination: d.state for d in s.scalars(select(Delivery)).all()}
        assert states == {f"reply:{orthanc.dicom_port}": "done",
                          f"ORTHANC@127.0.0.1:{orthanc.dicom_port}/comprehensive": "done"}
    finally:
        orthanc.stop()


def test_stow_rs_into_orthanc_dicomweb(serve_factory, rg1: Path, tmp_path: Path) -> None:
    orthanc = Orthanc(tmp_path)
    try:
        srv = serve_factory.new({"CXR_DESTINATIONS": f"{orthanc.url}/dicom-web"}).start()
        assert_stored(srv.storescu(rg1, extra=("-v",)))
        study_uid = dcmread(rg1, stop_before_pixels=True).StudyInstanceUID
        (sr,) = orthanc.wait_for_sr(study_uid)
        assert sr["SOPClassUID"] == SR_3D
        assert [t for t in orthanc.instances_in_study(study_uid) if t["Modality"] != "SR"] == []
        job = wait_job(srv.data_dir, study_uid, ("done",))
        assert sr["SOPInstanceUID"] == job.sr_sop_instance_uid
    finally:
        orthanc.stop()


def test_rejecting_orthanc_fails_the_job_without_a_retry_loop(
    serve_factory, rg1: Path, tmp_path: Path
) -> None:
    orthanc = Orthanc(tmp_path, allow_any_store=False)  # refuses our AE title
    try:
        srv = serve_factory.new(
            {"CXR_DESTINATIONS": f"ORTHANC@127.0.0.1:{orthanc.dicom_port}"}).start()
        assert_stored(srv.storescu(rg1, extra=("-v",)))
        study_uid = dcmread(rg1, stop_before_pixels=True).StudyInstanceUID
        job = wait_job(srv.data_dir, study_uid, ("failed",))
        assert "association rejected" in job.reason
        # retries exist only as a next attempt recorded in the database (the reconciler
        # publishes what is due): none is recorded, so none will come, however long we wait
        with db_for(srv.data_dir).session() as s:
            (delivery,) = s.scalars(select(Delivery)).all()
            assert (delivery.state, delivery.next_attempt_at) == ("failed", 0.0)
            assert "rejected-permanent" in delivery.detail
            # the reject ended the delivery at once: any earlier attempt was a transient
            # failure before Orthanc answered (a busy machine), never a second reject
            retried = [line for line in srv.log.read_text().splitlines()
                       if "delivery to ORTHANC@" in line and " failed (" in line]
            assert len(retried) == delivery.attempts - 1, retried
            assert not any("rejected-permanent" in line for line in retried), retried
            failed = s.scalar(select(Job))
            assert failed is not None
            assert (failed.state, failed.next_attempt_at, failed.holder) == ("failed", 0.0, "")
        assert orthanc.log.read_text().count("Rejected association") == 1
    finally:
        orthanc.stop()
