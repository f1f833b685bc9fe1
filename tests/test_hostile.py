"""Hostile input over the network: every case gets its specific outcome, the gateway keeps
serving, and nothing is written outside its data folder."""

from __future__ import annotations

import json
import os
import re
import socket
import struct
import time
from pathlib import Path

import pytest
from pydicom import dcmread
from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from sqlalchemy import select

from tests.dicom_factory import raw_c_store, raw_c_store_response
from tests.hostile_corpus import (
    LIMIT_MB,
    REFUSED,
    REFUSED_A700,
    REFUSED_A900,
    REFUSED_C000,
    HostileCase,
    corpus,
    deflate_bomb,
)
from tests.peers import StoreSCP
from tests.test_end_to_end import assert_stored, db_for
from worker.store.db import AssociationLog, Instance, Job, Study

pytestmark = pytest.mark.integration

STATUS = {REFUSED_A900: (0xA900,), REFUSED_C000: (0xC000,), REFUSED: (0xA900, 0xC000),
          REFUSED_A700: (0xA700,)}


def echo(port: int) -> bool:
    ae = AE(ae_title="ECHOSCU")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, ae_title="CXRGATEWAY")
    if not assoc.is_established:
        return False
    status = assoc.send_c_echo()
    assoc.release()
    return bool(status) and int(status.Status) == 0


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def outcome(data_dir: Path, c: HostileCase, timeout: float = 90.0) -> tuple[str, str]:
    """What became of an acknowledged case: (done | failed | skipped, reason)."""
    deadline = time.monotonic() + timeout
    db = db_for(data_dir)
    while time.monotonic() < deadline:
        with db.session() as s:
            inst = s.scalar(select(Instance).where(
                Instance.sop_instance_uid == c.sop_instance_uid))
            assert inst is not None, f"{c.name}: acknowledged but not recorded"
            study = s.scalar(select(Study).where(
                Study.study_instance_uid == inst.study_instance_uid))
            job = s.scalar(select(Job).where(
                Job.study_instance_uid == inst.study_instance_uid))
            if job is not None and job.state in ("done", "failed"):
                return f"job {job.state}", job.reason
            if job is None and study is not None and study.assembled_at is not None:
                return "study skipped", inst.skip_reason
        time.sleep(0.2)
    raise TimeoutError(f"{c.name}: no outcome")


def test_hostile_corpus_over_the_network(serve_factory, tmp_path: Path) -> None:
    cases = corpus()
    assert len(cases) >= 50
    data_dir = tmp_path / "gateway"
    srv = serve_factory.new({"CXR_MAX_SOURCE_PIXELS": str(64 * 2**20),
                             "CXR_MAX_INSTANCE_MB": str(LIMIT_MB)},
                            data_dir=data_dir).start()
    outside_before = tree(tmp_path) - {p for p in tree(tmp_path) if p.startswith("gateway")}
    results: dict[str, str] = {}
    wrong: list[tuple[str, str, str]] = []
    for c in cases:
        status = raw_c_store(srv.port, c.sop_instance_uid, c.data, c.sop_class_uid,
                             transfer_syntax=c.transfer_syntax)
        assert echo(srv.port), f"the listener stopped serving after {c.name!r}"
        results[c.name] = "no answer" if status is None else f"0x{status:04X}"
        if (c.expect in STATUS) != (status != 0x0000) or (
                c.expect in STATUS and status not in STATUS[c.expect]):
            wrong.append((c.name, c.expect, results[c.name]))
    log = srv.log.read_text(errors="replace")
    for c in cases:
        if c.expect in STATUS:
            lines = [ln for ln in log.splitlines() if c.sop_instance_uid in ln and (
                "refused" in ln or "cannot parse" in ln)]
            if not lines or c.reason not in "\n".join(lines):
                wrong.append((c.name, f"log line with {c.reason!r}", "\n".join(lines)))
            continue
        if results[c.name] != "0x0000":
            continue
        got, reason = outcome(data_dir, c)
        results[c.name] = f"{got}: {reason}"
        if got != c.expect or c.reason not in reason:
            wrong.append((c.name, f"{c.expect} ({c.reason})", results[c.name]))
    assert wrong == [], "\n".join(map(str, wrong))
    # nothing written outside the data folder; inside it, only its own places
    outside_after = tree(tmp_path) - {p for p in tree(tmp_path) if p.startswith("gateway")}
    assert outside_after - outside_before <= {"serve.log"}
    allowed = re.compile(r"^(spool|outbox|previews|broker|run)(/|$)"
                         r"|^gateway\.db(-wal|-shm|\.writers)?$"
                         r"|^api-token$")
    strays = [p for p in tree(data_dir) if not allowed.match(p)]
    assert strays == []
    assert not list((data_dir / "spool" / ".tmp").iterdir())
    for name in ("etc", "x", "owned", "passwd"):
        assert not list(tmp_path.rglob(name)), name
    summary = tmp_path / "hostile-outcomes.txt"
    summary.write_text("\n".join(f"{k}: {v}" for k, v in results.items()))
    print(f"\n{len(cases)} hostile cases:", *(f"  {k}: {v}" for k, v in results.items()),
          sep="\n")
    assert os.path.getsize(summary) > 0


def association_rows(data_dir: Path, outcome: str, count: int, timeout: float = 120.0,
                     peers: frozenset[str] = frozenset()) -> list[AssociationLog]:
    """Wait for at least ``count`` association log rows with this outcome, among them
    one for each of ``peers`` (other connections, the start-up probe's, may count too)."""
    deadline = time.monotonic() + timeout
    while True:
        with db_for(data_dir).session() as s:
            rows = list(s.scalars(select(AssociationLog)
                                  .where(AssociationLog.outcome == outcome)))
        if (len(rows) >= count and peers <= {r.peer for r in rows}) \
                or time.monotonic() > deadline:
            return rows
        time.sleep(0.2)


def test_a_deflate_bomb_is_refused_and_a_radiograph_still_becomes_an_sr(
        serve_factory, storescp: StoreSCP, rg1: Path) -> None:
    """1 MiB on the wire that inflates to 1 GiB, under the default 512 MiB limit."""
    bomb = deflate_bomb()
    assert len(bomb.data) < 2 * 2**20
    srv = serve_factory.new({"CXR_DESTINATIONS": storescp.destination}).start()
    rsp = raw_c_store_response(srv.port, bomb.sop_instance_uid, bomb.data,
                               bomb.sop_class_uid, transfer_syntax=bomb.transfer_syntax)
    assert rsp is not None and rsp.Status == 0xA700
    assert rsp.ErrorComment == "inflates to more than 512 MiB (CXR_MAX_INSTANCE_MB)"
    # the association log: its row counts the refusal, its log line says why
    rows = association_rows(srv.data_dir, "released", 1)
    assert [json.loads(r.statuses) for r in rows if r.calling_ae == "RAWSCU"] == \
        [{"0xA700": 1}]
    log = srv.log.read_text(errors="replace")
    assert f"dataset {bomb.sop_instance_uid} refused (0xA700): inflates to more than " \
           "512 MiB" in log
    assert re.search(r"association from RAWSCU \(.*\) released: 0 stored, 1 failed "
                     r"\(0xA700: inflates to more than 512 MiB", log), log
    with db_for(srv.data_dir).session() as s:
        assert s.scalar(select(Instance).where(
            Instance.sop_instance_uid == bomb.sop_instance_uid)) is None
    assert not list((srv.data_dir / "spool" / ".tmp").iterdir())
    # and the gateway goes on: a real radiograph becomes an SR at the destination
    assert_stored(srv.storescu(rg1, extra=("-v",)))
    (sr_file,) = storescp.wait_files(1, timeout=120)
    sr = dcmread(sr_file)
    assert sr.Modality == "SR"
    assert sr.StudyInstanceUID == dcmread(rg1, stop_before_pixels=True).StudyInstanceUID


def _is_open(sock: socket.socket) -> bool:
    """True while the gateway has neither closed nor reset the connection."""
    sock.setblocking(False)
    try:
        return sock.recv(1) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        sock.setblocking(True)


def _closed_by_peer(sock: socket.socket, deadline: float) -> bool:
    sock.settimeout(max(0.1, deadline - time.monotonic()))
    try:
        return sock.recv(1) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


@pytest.mark.parametrize("processes", [1, 2])
def test_a_pdu_announced_over_the_limit_is_refused_unread(serve_factory, rg1: Path,
                                                          processes: int) -> None:
    """A peer announcing a PDU of 1 GiB (an A-ASSOCIATE-RQ here; pynetdicom reads every
    PDU type alike, a P-DATA-TF too) is disconnected before any of its body is read, and
    the gateway goes on serving.  (Before: pynetdicom read whatever the peer sent into
    memory, as long as the header said.)"""
    srv = serve_factory.new({"CXR_LISTENER_PROCESSES": str(processes),
                             "CXR_MAX_PDU_SIZE": "65536",
                             # long, so that only the PDU limit can close the connection
                             "CXR_ASSOCIATION_REQUEST_SECONDS": "600"}).start()
    sock = socket.create_connection(("127.0.0.1", srv.port))
    try:
        sock.sendall(struct.pack(">BBL", 0x01, 0, 2**30) + b"\0" * 4096)
        assert _closed_by_peer(sock, time.monotonic() + 120)
    finally:
        sock.close()
    deadline = time.monotonic() + 120
    said = "announced a PDU of 1073741824 bytes, over the 65536 this listener receives"
    while said not in srv.log.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert said in srv.log.read_text()
    assert_stored(srv.storescu(rg1, extra=("-v",)))


@pytest.mark.parametrize("processes", [1, 2])
def test_idle_connections_hold_no_association_slot(serve_factory, rg1: Path,
                                                   processes: int) -> None:
    """40 connections that never send an A-ASSOCIATE-RQ, against a limit of 4
    associations: a real sender is still accepted while they are open, and the gateway
    closes them itself.  (Before: they held the limit for the ACSE timeout.)"""
    srv = serve_factory.new({"CXR_LISTENER_PROCESSES": str(processes),
                             "CXR_MAX_ASSOCIATIONS": "4",
                             # long enough that storescu surely runs while they are open
                             "CXR_ASSOCIATION_REQUEST_SECONDS": "20"}).start()
    idle = [socket.create_connection(("127.0.0.1", srv.port)) for _ in range(40)]
    peers = {"{}:{}".format(*sock.getsockname()) for sock in idle}
    try:
        result = srv.storescu(rg1, extra=("-v",))
        assert_stored(result)
        assert all(_is_open(sock) for sock in idle), "idle connections closed too early"
        deadline = time.monotonic() + 120
        closed = [_closed_by_peer(sock, deadline) for sock in idle]
        assert all(closed), f"{closed.count(False)} idle connections still open"
    finally:
        for sock in idle:
            sock.close()
    # each of them is in the association log as a connection closed without a request
    closed_rows = association_rows(srv.data_dir, "closed", 40, peers=frozenset(peers))
    assert peers <= {r.peer for r in closed_rows}
    assert len(association_rows(srv.data_dir, "released", 1)) == 1
    assert "closed without an A-ASSOCIATE-RQ" in srv.log.read_text(errors="replace")
