"""The soak's own code, shorter: 50 studies on Redis + PostgreSQL while processes die."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.peers import ROOT

pytestmark = pytest.mark.integration


@pytest.mark.timeout(600)
@pytest.mark.parametrize(("backend", "latency"), [("mock", "0.2"), ("openai", "0.5")])
def test_short_soak_loses_and_duplicates_nothing(tmp_path: Path, backend: str,
                                                latency: str) -> None:
    """On the mock, and on the vLLM stand-in (a server process; each request held long
    enough that a GPU worker's SIGKILL cuts requests off mid-generation)."""
    out = tmp_path / "soak.json"
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "soak.py"), "--studies", "50", "--worker-kills",
         "2", "--gateway-kills", "1", "--sigterms", "2", "--liveness", "4",
         "--latency", latency, "--rate", "2", "--timeout", "400", "--json", str(out),
         "--backend", backend],
        capture_output=True, text=True, timeout=580)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    summary = json.loads(out.read_text())
    assert summary["acknowledged"] == 50 and summary["srs_delivered"] == 50, summary
    assert (summary["lost"], summary["duplicated"], summary["failed"]) == (0, 0, 0), summary
    # every planned event happened, each while its victim held work
    events = summary["events"]
    assert summary["chaos_error"] is None, summary  # the plan did not break off
    assert summary["events_skipped"] == [], summary  # an event whose victim never held work
    assert sum("SIGKILL gpu worker" in e for e in events) == 2, events
    assert sum("SIGKILL gateway" in e for e in events) == 1, events
    assert sum("SIGTERM gateway while delivering" in e for e in events) == 2, events
    assert sum("restart redis" in e for e in events) == 1, events
    # (how long exits and takeovers took is the bench's to print, not a test's to bound)
    assert summary["sigterm_exit_codes"] == [0, 0], summary  # clean exits, not kills
    assert summary["takeovers"] > 0 and summary["takeovers_missing"] == 0, summary
    assert "RESULT soak_lost=0 soak_duplicates=0 soak_studies=50" in run.stdout
    if backend == "openai":
        assert summary["backend"] == "openai"
        # every study's image got its whole conversation, and each GPU kill cut requests off
        assert summary["conversations_completed"] == 50, summary
        assert summary["conversations_missing"] == 0, summary
        cut = [re.search(r", (\d+) request\(s\) being generated", e)
               for e in events if "SIGKILL gpu worker" in e]
        assert len(cut) == 2 and all(m and int(m.group(1)) > 0 for m in cut), events
        requests = summary["model_requests"]
        assert requests["report 200"] >= 50 and requests["findings 200"] >= 50, requests
