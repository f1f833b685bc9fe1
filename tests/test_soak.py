"""The soak's own code, shorter: 50 studies on Redis + PostgreSQL while processes die."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.peers import ROOT

pytestmark = pytest.mark.integration


@pytest.mark.timeout(600)
def test_short_soak_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "soak.py"), "--studies", "50", "--worker-kills",
         "2", "--gateway-kills", "1", "--sigterms", "2", "--liveness", "4",
         "--latency", "0.2", "--rate", "2", "--timeout", "400", "--json", str(out)],
        capture_output=True, text=True, timeout=580)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    summary = json.loads(out.read_text())
    assert summary["acknowledged"] == 50 and summary["srs_delivered"] == 50, summary
    assert (summary["lost"], summary["duplicated"], summary["failed"]) == (0, 0, 0), summary
    # every planned event happened, each while its victim held work
    events = summary["events"]
    assert sum("SIGKILL gpu worker" in e for e in events) == 2, events
    assert sum("SIGKILL gateway" in e for e in events) == 1, events
    assert sum("SIGTERM gateway while delivering" in e for e in events) == 2, events
    assert sum("restart redis" in e for e in events) == 1, events
    assert summary["longest_sigterm_exit_s"] < 5, summary
    assert summary["longest_takeover_wait_s"] < 4 + 1 + 10, summary
    assert "RESULT soak_lost=0 soak_duplicates=0 soak_studies=50" in run.stdout
