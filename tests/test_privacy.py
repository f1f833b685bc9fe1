"""Patient data never reaches a log, an error or a listing; files are private to the user."""

from __future__ import annotations

import stat
import subprocess
import time
from pathlib import Path

import pytest
from pydicom.uid import JPEG2000Lossless
from sqlalchemy import select

from tests.dicom_factory import raw_c_store
from tests.hostile_corpus import _encapsulated, base, element, encode
from tests.peers import BIN, StoreSCP
from tests.test_end_to_end import db_for
from worker.store.db import Job, Study

pytestmark = pytest.mark.integration

NAME, PID, BIRTH = "Zyxwvut^Qwerty", "PID-98765-XYZ", "19230405"
SECRETS = ("Zyxwvut", "Qwerty", PID, BIRTH, "Zyx wvut")


def patient(ds):  # type: ignore[no-untyped-def]
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = NAME, PID, BIRTH
    ds.OtherPatientIDs = PID
    return ds


def http(srv, path: str, token: str | None = None) -> str:  # type: ignore[no-untyped-def]
    import urllib.error
    import urllib.request

    req = urllib.request.Request(f"http://127.0.0.1:{srv.api_port}{path}")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return str(resp.read().decode(errors="replace"))
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code} " + exc.read().decode(errors="replace")


def leaks(text: str) -> list[str]:
    return [s for s in SECRETS if s.lower() in text.lower()]


def cli(data_dir: Path, *args: str) -> str:
    out = subprocess.run([str(BIN / "cxr-gateway"), *args, "--data-dir", str(data_dir)],
                         capture_output=True, text=True, timeout=60)
    return out.stdout + out.stderr


def test_no_patient_data_in_logs_errors_or_listings(serve_factory, storescp: StoreSCP,
                                                    tmp_path: Path) -> None:
    srv = serve_factory.new({"CXR_DESTINATIONS": storescp.destination,
                             "CXR_MOCK_LABELS": "Edema"}).start()
    good = patient(base(seed=1))
    lateral = patient(base(seed=2))
    lateral.ViewPosition = "LL"
    corrupt = patient(_encapsulated(base(seed=3), b"\xff\x4f\xff\x51" + bytes(300),
                                    JPEG2000Lossless))
    odd = patient(base(seed=4))  # a name pydicom finds invalid (it would quote it)
    odd_bytes = encode(odd).replace(  # values pydicom's validation would quote
        element(0x0010, 0x0030, b"DA", BIRTH.encode()),
        element(0x0010, 0x0030, b"DA", b"Zyxwvut-1923"), 1).replace(
        element(0x0010, 0x0010, b"PN", NAME.encode()),
        element(0x0010, 0x0010, b"PN", b"Zyxwvut^Qwerty\x01\x02" + b"x" * 70), 1)
    garbage = patient(base(seed=5))
    garbage_bytes = encode(garbage)[:200]  # unparseable, with the name inside
    sent = [(good, encode(good), "1.2.840.10008.1.2.1"),
            (lateral, encode(lateral), "1.2.840.10008.1.2.1"),
            (corrupt, encode(corrupt), JPEG2000Lossless),
            (odd, odd_bytes, "1.2.840.10008.1.2.1"),
            (garbage, garbage_bytes, "1.2.840.10008.1.2.1")]
    statuses = [raw_c_store(srv.port, str(ds.SOPInstanceUID), data, transfer_syntax=ts)
                for ds, data, ts in sent]
    assert statuses[:4] == [0, 0, 0, 0] and statuses[4] in (0xA900, 0xC000)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        with db_for(srv.data_dir).session() as s:
            jobs = s.scalars(select(Job)).all()
            studies = s.scalars(select(Study)).all()
        if len(studies) == 4 and all(st.assembled_at for st in studies) and \
                len(jobs) == 3 and all(j.state in ("done", "failed") for j in jobs):
            break
        time.sleep(0.3)
    states = sorted(j.state for j in jobs)
    assert states == ["done", "done", "failed"], [(j.state, j.reason) for j in jobs]
    storescp.wait_files(2)
    # every place a person or a program reads the gateway's words
    token = (srv.data_dir / "api-token").read_text().strip()
    texts = {"serve log": srv.log.read_text(errors="replace"),
             "jobs list": cli(srv.data_dir, "jobs", "list"),
             "status": cli(srv.data_dir, "status"),
             "studies list": cli(srv.data_dir, "studies", "list"),
             "metrics": http(srv, "/metrics"),
             "API overview": http(srv, "/api/overview", token),
             "API jobs": http(srv, "/api/jobs", token),
             "API associations": http(srv, "/api/associations", token),
             "API error": http(srv, "/api/jobs/424242", token),
             "API error (bad time)": http(srv, "/api/jobs?since=Zyxwvut", token),
             "API error (no token)": http(srv, "/api/jobs")}
    for study in studies:
        uid = study.study_instance_uid
        texts[f"studies show {uid}"] = cli(srv.data_dir, "studies", "show", uid)
        texts[f"API study {uid}"] = http(srv, f"/api/studies/{uid}", token)
    for job in jobs:
        texts[f"jobs show {job.id}"] = cli(srv.data_dir, "jobs", "show", str(job.id))
        texts[f"jobs show {job.id} --json"] = cli(srv.data_dir, "jobs", "show", str(job.id),
                                                  "--json")
        texts[f"API job {job.id}"] = http(srv, f"/api/jobs/{job.id}", token)
        texts[f"reason of job {job.id}"] = job.reason
    found = {where: leaks(text) for where, text in texts.items() if leaks(text)}
    assert found == {}
    assert any("failed" in t for t in texts.values())  # the listings did say something
    assert "cxr_jobs" in texts["metrics"] and texts["API error"].startswith("HTTP 404")
    assert "No hostname was supplied" not in texts["serve log"]
    assert "destinations: DESTPACS@" in texts["serve log"]  # the start-up summary

    # the spool, outbox, previews and database: the service user's alone
    loose = [str(p) for p in srv.data_dir.rglob("*")
             if stat.S_IMODE(p.stat().st_mode) & 0o077]
    assert loose == []
    assert stat.S_IMODE(srv.data_dir.stat().st_mode) == 0o700
