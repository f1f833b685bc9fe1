"""Ingest you can trust, against dcmtk storescu/echoscu and the real `serve` process."""

from __future__ import annotations

import dataclasses
import json
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid
from sqlalchemy import func, select

from dicom_gateway.imaging.conversion import convert_file
from dicom_gateway.listen.listener import ReceivedInstance, StorageUnavailable
from tests.dicom_factory import dcmtk_convert, encode_dataset, make_cr, raw_c_store, save
from tests.peers import (
    HoldingProxy,
    PostgresCluster,
    Serve,
    StoreSCP,
    dicom_tool,
    pixelmed_errors,
    require_tool,
    sample_file,
)
from tests.test_end_to_end import assert_stored, db_for, wait_job
from worker.ingest.sink import InstanceRecorder
from worker.store.db import AssociationLog, Database, Instance, Job

pytestmark = pytest.mark.integration


def instance_count(data_dir: Path) -> int:
    with db_for(data_dir).session() as s:
        return int(s.scalar(select(func.count()).select_from(Instance)) or 0)


def associations(data_dir: Path, timeout: float = 5.0, at_least: int = 1
                 ) -> list[AssociationLog]:
    deadline = time.monotonic() + timeout
    while True:
        with db_for(data_dir).session() as s:
            rows = list(s.scalars(select(AssociationLog).order_by(AssociationLog.started_at)).all())
        # connections that never asked for an association (our port probes) are logged
        # as "closed"; leave them out
        rows = [r for r in rows if r.outcome != "closed"]
        if len(rows) >= at_least or time.monotonic() > deadline:
            return rows
        time.sleep(0.1)


# storescu's option proposing each syntax (it has none for JPEG Lossless process 14
# without SV1, 1.2.840.10008.1.2.4.57, which the listener accepts but dcmtk cannot send).
STORESCU_PROPOSAL = {
    "1.2.840.10008.1.2.1": "-xe", "1.2.840.10008.1.2": "-xi", "1.2.840.10008.1.2.2": "-xb",
    "1.2.840.10008.1.2.1.99": "-xd", "1.2.840.10008.1.2.4.50": "-xy",
    "1.2.840.10008.1.2.4.51": "-xx", "1.2.840.10008.1.2.4.70": "-xs",
    "1.2.840.10008.1.2.4.80": "-xt", "1.2.840.10008.1.2.4.81": "-xu",
    "1.2.840.10008.1.2.4.90": "-xv", "1.2.840.10008.1.2.4.91": "-xw",
    "1.2.840.10008.1.2.5": "-xr",
}


def syntax_files(tmp: Path) -> dict[str, Path]:
    """One small CR per transfer syntax (each its own SOP Instance), made with dcmtk."""
    count = iter(range(100))

    def fresh(bits: int = 12) -> Path:
        n = next(count)
        return save(make_cr(bits=bits, seed=n), tmp / f"base{n}.dcm")

    def conv(tool: str, option: str, bits: int = 12) -> Path:
        return dcmtk_convert(tool, [option] if option else [], fresh(bits),
                             tmp / f"{tool}{option.strip('+')}{bits}.dcm")

    files = {
        "1.2.840.10008.1.2.1": fresh(),
        "1.2.840.10008.1.2": conv("dcmconv", "+ti"),
        "1.2.840.10008.1.2.2": conv("dcmconv", "+tb"),
        "1.2.840.10008.1.2.1.99": conv("dcmconv", "+td"),
        "1.2.840.10008.1.2.4.50": conv("dcmcjpeg", "+eb", bits=8),
        "1.2.840.10008.1.2.4.51": conv("dcmcjpeg", "+ee"),
        "1.2.840.10008.1.2.4.70": conv("dcmcjpeg", "+e1"),
        "1.2.840.10008.1.2.4.80": conv("dcmcjpls", "+el"),
        "1.2.840.10008.1.2.4.81": conv("dcmcjpls", "+en"),
        "1.2.840.10008.1.2.5": conv("dcmcrle", ""),
        # dcmtk has no JPEG 2000 encoder: pydicom-data's RG1 in both J2K syntaxes
        "1.2.840.10008.1.2.4.90": sample_file("RG1_J2KR.dcm"),
        "1.2.840.10008.1.2.4.91": sample_file("RG1_J2KI.dcm"),
    }
    for ts, path in files.items():
        assert dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID == ts
    return files


def test_every_transfer_syntax_is_stored_as_sent_and_decodes(serve_factory, tmp_path: Path
                                                              ) -> None:
    files = syntax_files(tmp_path)
    srv = serve_factory.new({"CXR_STUDY_QUIET_SECONDS": "600"}).start()
    for ts, path in files.items():
        # propose the file's own syntax, so nothing is converted on the way
        out = srv.storescu(path, extra=("-v", "-R", STORESCU_PROPOSAL[ts]))
        assert_stored(out)
        sop = dcmread(path, stop_before_pixels=True).SOPInstanceUID
        with db_for(srv.data_dir).session() as s:
            inst = s.scalar(select(Instance).where(Instance.sop_instance_uid == sop))
            assert inst is not None, ts
            assert inst.transfer_syntax_uid == ts
            stored = Path(inst.path)
        assert stored.read_bytes()[132:] and convert_file(stored).width > 0, ts


def test_unknown_calling_or_called_ae_is_rejected(serve_factory, rg1: Path) -> None:
    srv = serve_factory.new({"CXR_ALLOWED_CALLING_AETS": "GOODSCU"}).start()
    bad = srv.storescu(rg1, calling="BADSCU", extra=("-v",))
    assert bad.returncode != 0 and "Association Rejected" in bad.stderr, bad.stderr
    assert "Calling AE Title Not Recognized" in bad.stderr
    wrong_called = subprocess.run(
        [dicom_tool("storescu"), "-aet", "GOODSCU", "-aec", "NOTUS", "-v", "127.0.0.1",
         str(srv.port), str(rg1)], capture_output=True, text=True, timeout=60)
    assert "Called AE Title Not Recognized" in wrong_called.stderr, wrong_called.stderr
    assert instance_count(srv.data_dir) == 0
    assert_stored(srv.storescu(rg1, calling="GOODSCU", extra=("-v",)))
    rows = associations(srv.data_dir, at_least=3)
    assert [r.outcome for r in rows] == ["rejected", "rejected", "released"]
    assert rows[0].calling_ae == "BADSCU" and rows[2].stored == 1
    assert rows[2].peer.startswith("127.0.0.1:")


def _cert(folder: Path, name: str) -> tuple[Path, Path]:
    key, crt = folder / f"{name}.key", folder / f"{name}.crt"
    subprocess.run([require_tool("openssl"), "req", "-x509", "-newkey", "rsa:2048",
                    "-nodes", "-days", "1", "-subj", f"/CN={name}", "-keyout", str(key),
                    "-out", str(crt)], check=True, capture_output=True)
    return key, crt


def _tls_gateway(serve_factory: Any, folder: Path, processes: int,
                 **env: str) -> tuple[Serve, tuple[str, ...]]:
    """serve with TLS, and the storescu options of a client it trusts."""
    server_key, server_crt = _cert(folder, "localhost")
    client_key, client_crt = _cert(folder, "client")
    srv = serve_factory.new({"CXR_TLS_CERT_FILE": str(server_crt),
                             "CXR_TLS_KEY_FILE": str(server_key),
                             "CXR_LISTENER_PROCESSES": str(processes), **env}).start()
    return srv, ("-v", "+tls", str(client_key), str(client_crt), "-rc", "+cf", str(server_crt))


@pytest.mark.parametrize("processes", [1, 2])
def test_tls_with_dcmtk(serve_factory, rg1: Path, tmp_path: Path, processes: int) -> None:
    srv, tls = _tls_gateway(serve_factory, tmp_path, processes)
    for _ in range(processes * 2):  # with two processes, serve hands these to both in turn
        assert_stored(srv.storescu(rg1, extra=tls))
    plain = srv.storescu(rg1, extra=("-v",))  # a plain association cannot talk to it
    assert "Store Response (Success)" not in plain.stderr
    assert instance_count(srv.data_dir) == 1


@pytest.mark.parametrize("processes", [1, 2])
def test_silent_tls_connections_hold_no_sender_out(serve_factory, rg1: Path, tmp_path: Path,
                                                   processes: int) -> None:
    """Connections that never start their TLS handshake, one more than there are listener
    processes, while a real TLS sender stores: it is served, and the gateway closes the
    silent ones itself.  (Before: the handshake ran in each process's accept loop, which a
    silent peer held for as long as it liked.)"""
    srv, tls = _tls_gateway(serve_factory, tmp_path, processes,
                            CXR_ASSOCIATION_REQUEST_SECONDS="10")
    silent = [socket.create_connection(("127.0.0.1", srv.port)) for _ in range(processes + 1)]
    try:
        assert_stored(srv.storescu(rg1, extra=tls))
        for sock in silent:
            sock.settimeout(120)
            assert sock.recv(1) == b""  # closed by the gateway, not by us
    finally:
        for sock in silent:
            sock.close()
    assert instance_count(srv.data_dir) == 1


def test_watermark_refuses_with_a700_and_stores_nothing(serve_factory, rg1: Path) -> None:
    srv = serve_factory.new({"CXR_MIN_FREE_MB": str(1 << 40)}).start()
    out = srv.storescu(rg1, extra=("-v",))
    assert "0xa700" in out.stderr.lower() or "Refused: OutOfResources" in out.stderr, out.stderr
    assert instance_count(srv.data_dir) == 0
    study = dcmread(rg1, stop_before_pixels=True).StudyInstanceUID
    assert not (srv.data_dir / "spool" / study).exists()
    assert list((srv.data_dir / "spool" / ".tmp").iterdir()) == []


def test_mismatch_missing_attributes_and_unparseable(serve_factory) -> None:
    srv = serve_factory.new().start()
    good = make_cr()
    assert raw_c_store(srv.port, good.SOPInstanceUID, encode_dataset(good)) == 0x0000
    assert raw_c_store(srv.port, generate_uid(), encode_dataset(make_cr())) == 0xA900
    no_study = make_cr()
    del no_study.StudyInstanceUID
    assert raw_c_store(srv.port, no_study.SOPInstanceUID, encode_dataset(no_study)) == 0xA900
    no_pixels = make_cr()
    del no_pixels.PixelData
    assert raw_c_store(srv.port, no_pixels.SOPInstanceUID, encode_dataset(no_pixels)) == 0xA900
    bad_path = make_cr()
    bad_path.StudyInstanceUID = "../../etc"
    assert raw_c_store(srv.port, bad_path.SOPInstanceUID, encode_dataset(bad_path)) == 0xA900
    garbage = b"\x08\x00\x16\x00XX\x04\x001.2." + bytes(range(256))
    assert raw_c_store(srv.port, generate_uid(), garbage) == 0xC000
    assert instance_count(srv.data_dir) == 1  # only the good one
    spooled = [p for p in (srv.data_dir / "spool").rglob("*.dcm")]
    assert [p.stem for p in spooled] == [good.SOPInstanceUID]
    assert_stored(srv.storescu(save(make_cr(), srv.data_dir.parent / "after.dcm"),
                               extra=("-v",)))  # still serving


def test_duplicate_is_success_and_adds_no_work(serve_factory, storescp: StoreSCP,
                                               rg1: Path) -> None:
    srv = serve_factory.new({"CXR_DESTINATIONS": storescp.destination}).start()
    assert_stored(srv.storescu(rg1, extra=("-v",)))
    assert_stored(srv.storescu(rg1, extra=("-v",)))
    study = dcmread(rg1, stop_before_pixels=True).StudyInstanceUID
    wait_job(srv.data_dir, study, ("done",))
    assert_stored(srv.storescu(rg1, extra=("-v",)))  # after the job, too
    time.sleep(2.5)
    assert instance_count(srv.data_dir) == 1
    with db_for(srv.data_dir).session() as s:
        assert len(s.scalars(select(Job)).all()) == 1
    assert len(storescp.files()) == 1


def test_ten_parallel_associations_of_twenty(serve_factory, tmp_path: Path) -> None:
    srv = serve_factory.new({"CXR_STUDY_QUIET_SECONDS": "2"}).start()
    studies = []
    for a in range(10):
        folder = tmp_path / f"study{a}"
        folder.mkdir()
        study_uid = generate_uid()
        studies.append(study_uid)
        for i in range(20):
            view = "PA" if i == 0 else "LL" if i % 2 else "AP"
            save(make_cr(study_uid, view=view, number=i + 1, seed=a * 100 + i),
                 folder / f"{i:02d}.dcm")
    procs = [subprocess.Popen(
        [dicom_tool("storescu"), "-aet", f"SCU{a}", "-aec", "CXRGATEWAY", "-v", "+sd",
         "127.0.0.1", str(srv.port), str(tmp_path / f"study{a}")],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for a in range(10)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0 and err.count("Store Response (Success)") == 20, err[-2000:]
    assert instance_count(srv.data_dir) == 200
    for study_uid in studies:
        job = wait_job(srv.data_dir, study_uid, ("done",), timeout=120)
        assert job.version == 1
    with db_for(srv.data_dir).session() as s:
        assert len(s.scalars(select(Job)).all()) == 10
    rows = associations(srv.data_dir, at_least=10)
    assert sorted(r.stored for r in rows) == [20] * 10


def test_late_instance_creates_one_new_version(serve_factory, storescp: StoreSCP,
                                               tmp_path: Path) -> None:
    srv = serve_factory.new({"CXR_DESTINATIONS": storescp.destination}).start()
    study_uid = generate_uid()
    ap = save(make_cr(study_uid, view="AP", seed=1), tmp_path / "ap.dcm")
    pa = save(make_cr(study_uid, view="PA", seed=2), tmp_path / "pa.dcm")
    lateral = save(make_cr(study_uid, view="LL", seed=3), tmp_path / "ll.dcm")
    assert_stored(srv.storescu(ap, extra=("-v",)))
    v1 = wait_job(srv.data_dir, study_uid, ("done",))
    assert_stored(srv.storescu(pa, extra=("-v",)))  # late, and a better image
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with db_for(srv.data_dir).session() as s:
            jobs = s.scalars(select(Job).order_by(Job.version)).all()
        if len(jobs) == 2 and jobs[1].state == "done":
            break
        time.sleep(0.2)
    assert [j.version for j in jobs] == [1, 2] and jobs[1].state == "done"
    assert jobs[1].sop_instance_uid == dcmread(pa, stop_before_pixels=True).SOPInstanceUID
    assert_stored(srv.storescu(lateral, extra=("-v",)))  # late, but changes nothing
    time.sleep(3)
    files = storescp.wait_files(2)
    srs = {dcmread(f).SOPInstanceUID: dcmread(f) for f in files}
    assert set(srs) == {v1.sr_sop_instance_uid, jobs[1].sr_sop_instance_uid}
    pred = srs[jobs[1].sr_sop_instance_uid].PredecessorDocumentsSequence[0]
    assert pred.ReferencedSeriesSequence[0].ReferencedSOPSequence[0] \
        .ReferencedSOPInstanceUID == v1.sr_sop_instance_uid
    superseding = next(f for f in files if dcmread(f).SOPInstanceUID ==
                       jobs[1].sr_sop_instance_uid)
    assert pixelmed_errors(Path(superseding)) == []  # IHE's validator on the new version
    with db_for(srv.data_dir).session() as s:
        assert len(s.scalars(select(Job)).all()) == 2


def test_sigkill_during_an_association_leaves_no_partial_file(serve_factory, rg1: Path,
                                                             tmp_path: Path) -> None:
    folder = tmp_path / "big"
    folder.mkdir()
    source = dcmread(rg1)
    study_uid = generate_uid()
    for i in range(12):
        source.SOPInstanceUID = generate_uid()
        source.file_meta.MediaStorageSOPInstanceUID = source.SOPInstanceUID
        source.StudyInstanceUID = study_uid
        source.save_as(folder / f"{i:02d}.dcm", enforce_file_format=True)
    srv = serve_factory.new({"CXR_STUDY_QUIET_SECONDS": "600"}).start()
    # two and a half instances reach the gateway, the rest is held back: the kill below
    # lands with the third one half received, however fast or busy the machine is
    size = (folder / "00.dcm").stat().st_size
    proxy = HoldingProxy(srv.port, limit=size * 5 // 2)
    sender = subprocess.Popen(
        [dicom_tool("storescu"), "-aec", "CXRGATEWAY", "-v", "+sd", "127.0.0.1",
         str(proxy.port), str(folder)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True)
    deadline = time.monotonic() + 120
    while not (proxy.held.is_set() and instance_count(srv.data_dir) >= 2) and \
            time.monotonic() < deadline:
        time.sleep(0.02)
    assert proxy.held.is_set() and instance_count(srv.data_dir) == 2
    srv.kill()
    proxy.close()
    _, err = sender.communicate(timeout=120)
    assert err.count("Store Response (Success)") < 12  # the sender saw the failure
    assert "E:" in err or sender.returncode != 0
    recorded = instance_count(srv.data_dir)
    expected_size = len(source.PixelData)
    for path in (srv.data_dir / "spool" / study_uid).glob("*.dcm"):
        ds = dcmread(path)  # every visible file is complete
        assert len(ds.PixelData) == expected_size
    srv.start()
    assert list((srv.data_dir / "spool" / ".tmp").iterdir()) == []  # partials swept
    resend = subprocess.run(
        [dicom_tool("storescu"), "-aec", "CXRGATEWAY", "-v", "+sd", "127.0.0.1",
         str(srv.port), str(folder)], capture_output=True, text=True, timeout=300)
    assert resend.stderr.count("Store Response (Success)") == 12, resend.stderr[-2000:]
    assert instance_count(srv.data_dir) == 12 >= recorded


def _received(study_uid: str, n: int) -> ReceivedInstance:
    return ReceivedInstance(
        sop_instance_uid=generate_uid(), sop_class_uid="1.2.840.10008.5.1.4.1.1.1",
        study_instance_uid=study_uid, series_instance_uid=generate_uid(), modality="CR",
        transfer_syntax_uid="1.2.840.10008.1.2.1", path=Path(f"/spool/{n}.dcm"), size=n,
        sha256="0" * 64, calling_ae="SCU", peer="127.0.0.1:1")


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_group_commit_writes_waiting_instances_in_one_transaction(
        backend: str, tmp_path: Path) -> None:
    """Eight handlers waiting at once: one commit for all, each returns only after it; a
    row the database refuses fails alone, and the others are still recorded."""
    pg = PostgresCluster(tmp_path / "pg").start() if backend == "postgresql" else None
    try:
        db = Database(pg.url if pg else f"sqlite:///{tmp_path / 'g.db'}")
        db.migrate()
        recorder = InstanceRecorder(db)
        study_uid = generate_uid()
        items = [_received(study_uid, n) for n in range(8)]
        bad = dataclasses.replace(items[3], sop_class_uid="1" * 200)  # longer than its column
        items[3] = bad
        outcomes: dict[str, BaseException | None] = {}

        def handler(r: ReceivedInstance) -> None:
            try:
                recorder(r)
                outcomes[r.sop_instance_uid] = None
            except BaseException as exc:  # noqa: BLE001 - recorded for the assertions
                outcomes[r.sop_instance_uid] = exc

        with recorder._commit_lock:  # a commit in progress: the eight queue up behind it
            threads = [threading.Thread(target=handler, args=(r,)) for r in items]
            for t in threads:
                t.start()
            deadline = time.monotonic() + 10
            while len(recorder._queue) < 8 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert not outcomes  # nobody answered before the commit
        for t in threads:
            t.join(timeout=30)
        good = [r.sop_instance_uid for r in items if r is not bad]
        with db.session() as s:
            stored = set(s.scalars(select(Instance.sop_instance_uid)))
        if backend == "postgresql":  # enforces VARCHAR(64): the bad row fails alone
            assert isinstance(outcomes[bad.sop_instance_uid], StorageUnavailable)
            assert stored == set(good)
            assert recorder.commits == 7  # the batch failed, then each committed alone
        else:  # SQLite does not enforce lengths: all eight in the one transaction
            assert outcomes[bad.sop_instance_uid] is None
            assert stored == set(good) | {bad.sop_instance_uid}
            assert recorder.commits == 1
        assert all(outcomes[uid] is None for uid in good)
    finally:
        if pg:
            pg.stop()


def acknowledged_files(storescu_log: str) -> set[str]:
    """The files a dcmtk storescu saw answered with Success, from its ``-v`` log."""
    acked: set[str] = set()
    current = ""
    for line in storescu_log.splitlines():
        if "Sending file:" in line:
            current = line.split("Sending file:", 1)[1].strip()
        elif "Received Store Response (Success)" in line and current:
            acked.add(current)
            current = ""
    return acked


@pytest.mark.parametrize("processes", [1, 2])
def test_sigkill_mid_burst_from_four_senders_loses_no_acknowledged_instance(
        serve_factory, tmp_path: Path, processes: int) -> None:
    """Group commit must not acknowledge ahead of the commit: kill -9 in a 4-sender burst,
    with the listener in serve or in two listener processes (all of them killed at once)."""
    folder = tmp_path / "burst"
    folder.mkdir()
    study_uid = generate_uid()
    files = [save(make_cr(study_uid, view="PA" if i == 0 else "LL", number=i + 1, seed=i),
                  folder / f"{i:03d}.dcm") for i in range(500)]
    sop_of = {str(f): dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in files}
    srv = serve_factory.new({"CXR_STUDY_QUIET_SECONDS": "600",
                             "CXR_LISTENER_PROCESSES": str(processes)}).start()
    assert len(srv.listener_processes()) == (processes if processes > 1 else 0)
    senders = [subprocess.Popen(
        [dicom_tool("storescu"), "-aet", f"BURST{k}", "-aec", "CXRGATEWAY", "-v",
         "127.0.0.1", str(srv.port), *map(str, files[k::4])],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for k in range(4)]
    deadline = time.monotonic() + 120
    while instance_count(srv.data_dir) < 150 and time.monotonic() < deadline:
        time.sleep(0.01)
    srv.kill_all()  # SIGKILL, with the four associations mid-transfer
    logs = [p.communicate(timeout=120)[1] for p in senders]
    acked = set().union(*(acknowledged_files(log) for log in logs))
    assert 150 <= len(acked) < 500, "the kill must land mid-burst"
    srv.start()  # the restart sweeps what the kill left half-written
    spool = srv.data_dir / "spool"
    assert list((spool / ".tmp").iterdir()) == []
    with db_for(srv.data_dir).session() as s:
        rows = {i.sop_instance_uid: i for i in s.scalars(select(Instance))}
    for path in acked:  # every acknowledged instance has its row and its whole file
        assert dcmread(rows[sop_of[path]].path) == dcmread(path)
    source_of = {uid: path for path, uid in sop_of.items()}
    for stored in (spool / study_uid).glob("*.dcm"):  # no partial file anywhere
        assert dcmread(stored) == dcmread(source_of[stored.stem])


def test_association_log_counts_failures(serve_factory) -> None:
    srv = serve_factory.new().start()
    raw_c_store(srv.port, generate_uid(), encode_dataset(make_cr()))
    (row,) = associations(srv.data_dir)
    assert (row.calling_ae, row.stored, row.failed, row.outcome) == ("RAWSCU", 0, 1, "released")
    assert json.loads(row.statuses) == {"0xA900": 1}
