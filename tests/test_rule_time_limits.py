"""Rules that cannot stall the gateway (issue 31): a site's ``matches`` pattern meets a
sender's value in the ``regex`` engine with a time limit and a cap on the value read; a
search that runs out of time is false, named once in the log and counted; every term is
evaluated once; ``rules check`` flags nested quantifiers and ``rules test`` reports a
time-out."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
from pydicom import Dataset, dcmread
from pydicom.uid import generate_uid

from dicom_gateway.routing import conditions, patterns
from dicom_gateway.routing.building import build_rule_set
from dicom_gateway.routing.conditions import Term, any_field
from dicom_gateway.routing.facts import Facts
from dicom_gateway.routing.study import route_study
from tests.peers import BIN, StoreSCP, backend_env, dicom_tool, wait_until

STALL = "a" * 40 + "!"
# the pattern, and one the regex engine does backtrack on for this value
CONDITION = 'StudyDescription matches "^(a+)+$" or StudyDescription matches "^(a|aa)+$"'
RULES_TOML = f"""
[[rules]]
name = "stall"
condition = '{CONDITION}'
action = "skip"
reason = "a test rule"
"""


def header(description: str) -> Dataset:
    ds = Dataset()
    ds.StudyDescription = description
    return ds


def test_a_search_that_runs_out_of_time_is_false_and_says_so() -> None:
    rules, problems = build_rule_set([{"name": "stall", "condition": CONDITION,
                                       "action": "skip", "reason": "r"}], {}, check=any_field)
    assert not problems
    decision = rules.decide(Facts(header(STALL)))
    assert decision.is_default  # the rule did not match: the time-out counts as false
    (ev,) = decision.evaluations
    assert ev.timed_out == ('StudyDescription matches ...',)
    assert "(timed out)" in ev.explain()
    assert rules.decide(Facts(header("aaaa"))).rule == "stall"  # it still matches what it should


def test_a_value_is_read_up_to_its_cap() -> None:
    pattern = patterns.compile_pattern("b$")
    assert pattern.search("a" * 10 + "b")
    assert not pattern.search("a" * patterns.MAX_VALUE_CHARS + "b")  # past the cap: unread


def test_every_term_is_evaluated_once_per_instance(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = Term.holds

    def counted(self: Term, values: Any) -> bool:
        calls.append(self.field)
        return real(self, values)

    monkeypatch.setattr(Term, "holds", counted)
    rules, _ = build_rule_set([{"name": "r", "condition": 'StudyDescription matches "^a" and '
                                "not BodyPartExamined exists", "action": "skip",
                                "reason": "r"}], {}, check=any_field)
    rules.decide(Facts(header("abc")))
    assert calls == ["StudyDescription", "BodyPartExamined"]


@pytest.mark.parametrize(("pattern", "nested"), [
    ("^(a+)+$", True), ("(x|y*)*", True), (r"(\w*)*", True), ("((a)+b)+", True),
    ("^CHEST", False), ("^(ab)+$", False), ("a{2,5}", False), ("(?i)chest|thorax", False)])
def test_nested_quantifiers_are_found(pattern: str, nested: bool) -> None:
    assert patterns.nested_quantifiers(pattern) is nested


def test_a_bad_pattern_is_refused_in_the_syntax_re_documents() -> None:
    with pytest.raises(conditions.RuleError, match="bad regular expression"):
        conditions.parse_condition('StudyDescription matches "(unclosed"', any_field)


def test_the_study_decision_collects_each_rules_time_outs() -> None:
    from dicom_gateway.routing.admission import Candidate

    rules, _ = build_rule_set([{"name": "stall", "condition": CONDITION, "action": "skip",
                                "reason": "r"}], {}, check=any_field)
    cand = Candidate("1.2.3", "1.2.840.10008.5.1.4.1.1.1", "CR", "CHEST", "PA")
    routed = route_study(rules, [(cand, Facts(header(STALL)))])
    assert routed.timed_out == {"stall": ('StudyDescription matches ...',)}


# -- on a real serve ------------------------------------------------------------------------

def study_described(rg1: Path, out: Path, description: str) -> Path:
    ds = dcmread(rg1)
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.StudyDescription = description
    ds.save_as(out, enforce_file_format=True)
    return out


@pytest.mark.integration
def test_a_backtracking_rule_and_a_crafted_study_stall_nothing_on_a_real_serve(
        serve_factory: Any, rg1: Path, tmp_path: Path) -> None:
    """The issue's rule and study: C-ECHO answers, a normal study sent after it gets its
    SR, the log names the rule and the time-out, SIGTERM stops serve as usual; ``rules
    test`` on the same file finishes and says so, ``rules check`` warns of the pattern."""
    config = tmp_path / "gateway.toml"
    config.write_text(RULES_TOML)
    scp = StoreSCP(tmp_path / "pacs")
    try:
        srv = serve_factory.new({**backend_env("mock"), "CXR_CONFIG_FILE": str(config),
                                 "CXR_DESTINATIONS": scp.destination}).start()
        crafted = study_described(rg1, tmp_path / "crafted.dcm", STALL)
        assert srv.storescu(crafted).returncode == 0
        wait_until(lambda: "routing rule 'stall'" in srv.log.read_text(), "the time-out said")
        said = srv.log.read_text()
        assert "timed out" in said and "StudyDescription matches" in said
        echo = subprocess.run([dicom_tool("echoscu"), "-aec", "CXRGATEWAY", "127.0.0.1",
                               str(srv.port)], capture_output=True, text=True, timeout=60)
        assert echo.returncode == 0, echo.stderr
        normal = study_described(rg1, tmp_path / "normal.dcm", "CHEST PA")
        assert srv.storescu(normal).returncode == 0
        # the crafted study too: its rule's term timed out, so it was false, and the study
        # fell to the built-in admission like any other chest PA
        studies = {str(dcmread(p).StudyInstanceUID) for p in scp.wait_files(2)}
        assert studies == {str(dcmread(normal).StudyInstanceUID),
                           str(dcmread(crafted).StudyInstanceUID)}
        assert srv.proc is not None
        srv.proc.send_signal(signal.SIGTERM)
        assert srv.proc.wait(timeout=120) == 0
    finally:
        scp.stop()
    tested = subprocess.run([str(BIN / "cxr-gateway"), "rules", "test", "--config",
                             str(config), str(crafted)], capture_output=True, text=True,
                            timeout=120)
    assert tested.returncode == 0, tested.stderr
    assert "time-out: rule 'stall'" in tested.stdout and "(timed out)" in tested.stdout
    checked = subprocess.run([str(BIN / "cxr-gateway"), "rules", "check", "--config",
                              str(config)], capture_output=True, text=True, timeout=120)
    assert checked.returncode == 0, checked.stderr
    assert "nested quantifiers" in checked.stderr and "'^(a+)+$'" in checked.stderr
