"""Hostile input over the network: every case gets its specific outcome, the gateway keeps
serving, and nothing is written outside its data folder."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest
from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from sqlalchemy import select

from tests.dicom_factory import raw_c_store
from tests.hostile_corpus import (
    REFUSED,
    REFUSED_A900,
    REFUSED_C000,
    HostileCase,
    corpus,
)
from tests.test_end_to_end import db_for
from worker.db import Instance, Job, Study

pytestmark = pytest.mark.integration

STATUS = {REFUSED_A900: (0xA900,), REFUSED_C000: (0xC000,), REFUSED: (0xA900, 0xC000)}


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
    srv = serve_factory.new({"CXR_MAX_SOURCE_PIXELS": str(64 * 2**20)},
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
