"""Routing rules (issue 23): the condition parser, missing tags, validation with lines,
live reloads, assembly by rule, and the whole path with real peers (storescu sending five
studies in one association, two storescp destinations, the CLI, the openai stand-in)."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydicom import Dataset, dcmread
from pydicom.uid import generate_uid
from sqlalchemy import func, select

from dicom_gateway.routing import conditions, rules_file
from dicom_gateway.routing.admission import Candidate, admit
from dicom_gateway.routing.building import build_rule_set
from dicom_gateway.routing.conditions import Node, RuleError
from dicom_gateway.routing.facts import Facts, age_years
from dicom_gateway.routing.fields import check_field
from dicom_gateway.routing.rule_checks import Problem
from dicom_gateway.routing.rules import RuleSet
from dicom_gateway.routing.study import route_study
from tests import peers
from tests.dicom_factory import make_cr, save
from tests.peers import BIN, StoreSCP, backend_env, sample_file
from worker.ingest import assembler
from worker.ingest.routing import LiveRules, rules_of
from worker.runtime import Runtime, configure
from worker.settings import SettingsError, load_settings
from worker.store.db import Database, Instance, Job, Study, now

# -- the parser and its semantics (pure) ----------------------------------------------


def parse_condition(text: str) -> Node:
    return conditions.parse_condition(text, check_field)


def compile_rules(entries: object, sets: tuple[str, ...] | list[str] = ()
                  ) -> tuple[RuleSet, list[Problem]]:
    return build_rule_set(entries, dict.fromkeys(sets, "SET@127.0.0.1:104"),
                          check=check_field)


def check_text(text: str) -> tuple[RuleSet, list[Problem]]:
    return rules_file.check_text(text)


def header(**tags: object) -> Dataset:
    ds = Dataset()
    for k, v in tags.items():
        setattr(ds, k, v)
    return ds


def holds(condition: str, ds: Dataset, calling: str = "", called: str = "") -> bool:
    return parse_condition(condition).evaluate(Facts(ds, calling, called).values)


PA = header(Modality="CR", BodyPartExamined="CHEST", ViewPosition="PA", StationName="ROOM_1",
            ImageType=["ORIGINAL", "PRIMARY"], PatientAge="045Y", Rows=2048,
            AccessionNumber="ACC123")


@pytest.mark.parametrize(("condition", "expected"), [
    ('Modality == "CR"', True),
    ('Modality == "cr"', True),  # strings ignore case
    ('Modality != "CR"', False),
    ('Modality != "DX"', True),
    ('Modality in ["DX", "CR"]', True),
    ('Modality not in ["DX", "CR"]', False),
    ('StationName matches "^ROOM_\\d$"', True),
    ('StationName matches "OOM"', True),  # re.search: anchor to match whole values
    ('StationName matches "^OOM"', False),
    ("Rows > 2000", True),
    ("Rows >= 2049", False),
    ("Rows == 2048", True),
    ("PatientAgeYears < 18", False),
    ("PatientAgeYears >= 18 and PatientAgeYears <= 45", True),
    ('ImageType == "PRIMARY"', True),  # multi-valued: by membership
    ('ImageType != "DERIVED"', True),
    ('ImageType != "PRIMARY"', False),
    ('ImageType in ["LOCALIZER", "ORIGINAL"]', True),
    ('AccessionNumber in ["ACC123", "ACC999",]', True),
    ("StationName exists", True),
    ("StationName missing", False),
    ('not Modality == "CR" or ViewPosition == "PA"', True),
    ('not (Modality == "CR" or ViewPosition == "PA")', False),
    ('CallingAE == "MODALITY1" and CalledAE == "CXRGATEWAY"', True),
    ("always", True),
])
def test_conditions_evaluate_as_documented(condition: str, expected: bool) -> None:
    assert holds(condition, PA, "MODALITY1", "CXRGATEWAY") is expected


@pytest.mark.parametrize("condition", [
    'StationName == "ICU"', 'StationName != "ICU"', 'StationName in ["ICU"]',
    'StationName not in ["ICU"]', 'StationName matches ".*"', "StationName > 0",
    "StationName <= 0", "PatientAgeYears < 18", "PatientAgeYears >= 18",
    'CallingAE == "X"', 'CallingAE != "X"', "StationName exists",
])
def test_a_missing_tag_matches_nothing_and_never_raises(condition: str) -> None:
    """Absent, or present but empty: both are missing; `!=` and `not in` are false too."""
    for ds in (header(Modality="CR"), header(Modality="CR", StationName="")):
        assert holds(condition, ds) is False
        assert holds(f"not ({condition})", ds) is True  # only an explicit not inverts


def test_missing_tests_for_absence() -> None:
    assert holds("StationName missing", header(Modality="CR"))
    assert holds("StationName missing", header(StationName=""))
    assert not holds("StationName missing", header(StationName="ICU"))


def test_age_in_years_from_patient_age_or_from_the_dates() -> None:
    assert age_years("007Y", "", "") == 7.0
    assert age_years("018M", "", "") == pytest.approx(1.5)
    assert age_years("", "20100601", "20280531") == 17.0  # a day before the birthday
    assert age_years("", "20100601", "20280601") == 18.0
    assert age_years("", "", "20280601") is None
    assert age_years("garbage", "2010", "20280601") is None
    kid = header(PatientBirthDate="20100601", StudyDate="20250101")
    assert holds("PatientAgeYears < 18", kid)
    assert not holds("PatientAgeYears < 18", header(PatientBirthDate="20100601"))


@pytest.mark.parametrize(("condition", "fragment"), [
    ('StatoinName == "A"', "did you mean 'StationName'"),
    ('stationname == "A"', "did you mean 'StationName'"),
    ('StationName matches "(unclosed"', "bad regular expression"),
    ('StationName < "A"', "needs a number"),
    ('StationName == ', "expected a quoted string or a number"),
    ("(Modality == 'CR'", "expected ')'"),
    ("Modality", "expected an operator"),
    ("", "empty condition"),
    ('Modality == "CR" Modality', "unexpected"),
    ("Modality ~ 1", "unexpected character"),
    ('Modality == "CR', "unterminated string"),
    ("(" * 100 + "always" + ")" * 100, "nested deeper"),
    ("not " * 100 + "always", "nested deeper"),
])
def test_bad_conditions_are_refused_with_a_reason(condition: str, fragment: str) -> None:
    with pytest.raises(RuleError, match=None) as err:
        parse_condition(condition)
    assert fragment in str(err.value)


_PIECES = ["(", ")", "[", "]", ",", "and", "or", "not", "in", "matches", "exists", "missing",
           "always", "==", "!=", "<", "<=", ">", ">=", '"x"', "'(\\'", "1", "-2.5", "Modality",
           "StationName", "PatientAgeYears", "Nope", '"', "\\", " "]


@given(st.text(max_size=200))
def test_fuzz_random_text_raises_nothing_but_rule_error(text: str) -> None:
    try:
        tree = parse_condition(text)
    except RuleError:
        return
    tree.evaluate(Facts(PA, "A", "B").values)


@given(st.lists(st.sampled_from(_PIECES), max_size=40))
def test_fuzz_token_soup_raises_nothing_but_rule_error(pieces: list[str]) -> None:
    try:
        tree = parse_condition(" ".join(pieces))
    except RuleError:
        return
    for ds in (PA, header()):
        tree.evaluate(Facts(ds).values)


def test_the_explanation_names_keywords_never_values() -> None:
    kid = header(PatientAge="007Y", StationName="ICU_WARD_7", AccessionNumber="ACC55501")
    rules, problems = compile_rules([
        {"name": "acc", "condition": 'AccessionNumber in ["ACC55501"]', "action": "process"},
        {"name": "kids", "condition": "PatientAgeYears < 18 and StationName exists",
         "action": "skip", "reason": "pediatric"}])
    assert problems == []
    decision = rules.decide(Facts(kid, "SCU", "GW"))
    assert decision.rule == "acc"
    text = "\n".join(ev.explain() for ev in decision.evaluations)
    assert "AccessionNumber in [...]: true" in text
    for value in ("007", "ICU_WARD_7", "ACC55501", "7.0"):
        assert value not in text
    decision = rules.decide(Facts(header(PatientAge="007Y"), "SCU", "GW"))
    text = "\n".join(ev.explain() for ev in decision.evaluations)
    assert "rule 'acc' did not match (AccessionNumber in [...]: false (missing))" in text
    assert "PatientAgeYears < ...: true" in text and "007" not in text


# -- validation, with lines ------------------------------------------------------------

BROKEN = """\
destinations = "DEF@127.0.0.1:104"

[destination_sets]
research = "RES@127.0.0.1:105"

[[rules]]
name = "typo"
condition = 'StatoinName == "ICU"'
action = "skip"
reason = "ICU"

[[rules]]
name = "bad-regex"
action = "process"
condition = 'StudyDescription matches "(portable"'

[[rules]]
name = "unknown-set"
condition = "always"
action = "process"
destinations = "reserch"
"""


def test_check_reports_every_problem_with_its_line() -> None:
    _, problems = check_text(BROKEN)
    assert [(p.line, p.message.split(":")[0]) for p in problems] == [
        (8, "rule 'typo'"), (15, "rule 'bad-regex'"), (21, "rule 'unknown-set'")]
    assert "did you mean 'StationName'" in problems[0].message
    assert "bad regular expression" in problems[1].message
    assert "unknown destination set 'reserch' (did you mean 'research'?)" in \
        problems[2].message
    assert problems[0].render("site.toml").startswith("error: site.toml:8: ")


def test_check_refuses_bad_actions_keys_and_names() -> None:
    text = """\
[[rules]]
name = "a"
condition = "always"
action = "discard"

[[rules]]
name = "a"
condition = "always"
action = "skip"
prority = "live"

[[rules]]
name = "default"
condition = "Modality missing"
action = "process"
priority = "urgent"
"""
    _, problems = check_text(text)
    messages = {(p.line, p.message) for p in problems}
    assert (4, "rule 'a': action must be process or skip (got 'discard')") in messages
    assert (7, "rule 'a': the name is used twice") in messages
    assert (10, "rule 'a': unknown key 'prority' (did you mean 'priority'?)") in messages
    assert (9, "rule 'a': a skip rule needs a reason") in messages
    assert any(line == 13 and "built-in" in m for line, m in messages)
    assert any(line == 16 and "priority must be live or batch" in m for line, m in messages)


def test_settings_refuse_invalid_rules_and_know_every_destination(tmp_path: Path) -> None:
    cfg = tmp_path / "site.toml"
    cfg.write_text(BROKEN)
    with pytest.raises(SettingsError, match="routing rules: .*regular expression"):
        load_settings(cfg, {})  # the shape is checked on load (no DICOM library) ...
    cfg.write_text(GOOD.replace("StationName", "StatoinName"))
    with pytest.raises(SettingsError, match="did you mean 'StationName'"):
        rules_of(load_settings(cfg, {}))  # ... the keywords where rules are used
    cfg.write_text(BROKEN.split("[[rules]]")[0] + '[[rules]]\nname = "r"\n'
                   'condition = "always"\naction = "process"\ndestinations = "research"\n')
    s = load_settings(cfg, {})
    assert [r.name for r in rules_of(s).rules] == ["r"]
    assert sorted(s.destinations_by_name()) == ["DEF@127.0.0.1:104", "RES@127.0.0.1:105"]
    assert [str(d) for d in s.destination_set("research")] == ["RES@127.0.0.1:105"]
    assert [str(d) for d in s.destination_set("")] == ["DEF@127.0.0.1:104"]
    env = load_settings(None, {"CXR_DESTINATION_SETS": "a=X@h:1,Y@h:2;b=Z@h:3",
                               "CXR_RULES": json.dumps([{"name": "r", "condition": "always",
                                                         "action": "process",
                                                         "destinations": "b"}])})
    assert [str(d) for d in env.destination_set("a")] == ["X@h:1", "Y@h:2"]
    assert rules_of(env).rules[0].destinations == "b"


# -- live reloads -----------------------------------------------------------------------

GOOD = """\
[[rules]]
name = "first"
condition = 'StationName == "A"'
action = "skip"
reason = "station A"
"""


def test_a_broken_file_is_refused_and_the_previous_rules_stay(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = tmp_path / "site.toml"
    cfg.write_text(GOOD)
    live = LiveRules(load_settings(cfg, {}), cfg, environ={})
    assert [r.name for r in live.current().rules] == ["first"]
    assert live.check() is None  # nothing changed
    cfg.write_text(BROKEN)
    os.utime(cfg, ns=(time.time_ns(), time.time_ns() + 10**9))
    with caplog.at_level(logging.ERROR, logger="worker.ingest.routing"):
        assert live.check() is False
    assert [r.name for r in live.current().rules] == ["first"]  # kept in force
    refused = [r.getMessage() for r in caplog.records if "reload refused" in r.getMessage()]
    assert any(f"{cfg}:8:" in m and "StatoinName" in m for m in refused)
    assert any(f"{cfg}:15:" in m for m in refused) and any(f"{cfg}:21:" in m for m in refused)
    assert any("previous 1 rule(s) stay in force" in m for m in refused)
    cfg.write_text(GOOD.replace("first", "second"))
    os.utime(cfg, ns=(time.time_ns(), time.time_ns() + 2 * 10**9))
    assert live.check() is True
    assert [r.name for r in live.current().rules] == ["second"]
    live.request_reload()  # SIGHUP: reloads even though the file did not change
    assert live.check() is True


# -- a study: the rules, then the built-in admission ----------------------------------------


def candidates(*datasets: Dataset, calling: str = "SCU") -> list[tuple[Candidate, Facts]]:
    return [(Candidate.from_dataset(ds), Facts(ds, calling, "CXRGATEWAY")) for ds in datasets]


def test_no_rules_is_todays_admission_exactly() -> None:
    pa, ap, lateral = make_cr(view="PA"), make_cr(view="AP"), make_cr(view="LL")
    for group in ([pa, ap, lateral], [lateral], [ap, pa]):
        routed = route_study(RuleSet(), candidates(*group))
        today = admit(c for c, _ in candidates(*group))
        assert routed.admitted == today.admitted
        assert routed.skipped == today.skipped
        assert routed.outcome == (today.study_reason or f"admitted {today.admitted}")
        assert routed.rule == "default" and routed.priority == routed.destinations == ""


def test_skip_rules_win_and_admission_still_applies_after_a_process_match() -> None:
    rules, problems = compile_rules([
        {"name": "no-icu", "condition": 'StationName matches "^ICU"', "action": "skip",
         "reason": "ICU portables are excluded"},
        {"name": "research", "condition": 'StationName == "ROOM_1"', "action": "process",
         "priority": "batch", "destinations": "research"}], ["research"])
    assert problems == []
    pa, ap, lateral = make_cr(view="PA"), make_cr(view="AP"), make_cr(view="LL")
    pa.StationName, ap.StationName, lateral.StationName = "ICU_2", "ROOM_1", "ROOM_1"
    routed = route_study(rules, candidates(pa, ap, lateral))
    assert routed.admitted == ap.SOPInstanceUID  # the PA was the rule's to skip
    assert routed.skipped[pa.SOPInstanceUID] == \
        "skipped by rule 'no-icu': ICU portables are excluded"
    assert routed.skipped[lateral.SOPInstanceUID].startswith("lateral view")  # built-in
    assert (routed.rule, routed.priority, routed.destinations) == \
        ("research", "batch", "research")
    assert routed.outcome == f"admitted {ap.SOPInstanceUID} by rule 'research'"
    only_icu = route_study(rules, candidates(pa))
    assert only_icu.admitted is None
    assert only_icu.outcome == "skipped by rule 'no-icu': ICU portables are excluded"
    assert only_icu.rule == "no-icu"


# -- assembly with a database (SQLite file, no ports) ---------------------------------------


def _runtime(tmp_path: Path, **settings: object) -> Runtime:
    return configure(load_settings(None, {}, data_dir=tmp_path / "data", **settings))


def _receive(rt: Runtime, ds: Dataset, path: Path, calling: str = "SCU") -> None:
    save(ds, path)
    with rt.db.session() as s:
        if s.scalar(select(Study).where(Study.study_instance_uid == ds.StudyInstanceUID)) \
                is None:
            s.add(Study(study_instance_uid=ds.StudyInstanceUID, first_received_at=now(),
                        last_received_at=now() - 100))
        s.add(Instance(sop_instance_uid=ds.SOPInstanceUID, sop_class_uid=ds.SOPClassUID,
                       study_instance_uid=ds.StudyInstanceUID, path=str(path),
                       size=path.stat().st_size, sha256="0" * 64, received_at=now(),
                       calling_ae=calling))
        s.commit()


def test_assembly_records_the_rule_priority_and_destination_set(tmp_path: Path) -> None:
    rt = _runtime(tmp_path, destinations="DEF@127.0.0.1:104",
                  destination_sets={"research": "RES@127.0.0.1:105"},
                  rules=[{"name": "no-kids", "condition": "PatientAgeYears < 18",
                          "action": "skip", "reason": "patients under 18 are excluded"},
                         {"name": "research", "condition": 'CallingAE == "RESEARCH_SCU"',
                          "action": "process", "priority": "batch",
                          "destinations": "research"}])
    rules = rules_of(rt.settings)
    kid, routed, plain = make_cr(), make_cr(), make_cr()
    kid.PatientAge = "007Y"
    _receive(rt, kid, tmp_path / "kid.dcm")
    _receive(rt, routed, tmp_path / "routed.dcm", calling="RESEARCH_SCU")
    _receive(rt, plain, tmp_path / "plain.dcm")
    assert assembler.assemble_study(rt.db, kid.StudyInstanceUID, (), rules, "GW") is None
    routed_id = assembler.assemble_study(rt.db, routed.StudyInstanceUID, (), rules, "GW")
    plain_id = assembler.assemble_study(rt.db, plain.StudyInstanceUID, (), rules, "GW")
    with rt.db.session() as s:
        inst = s.scalar(select(Instance).where(Instance.sop_instance_uid == kid.SOPInstanceUID))
        assert inst is not None and inst.admission == "skipped"
        assert inst.skip_reason == "skipped by rule 'no-kids': patients under 18 are excluded"
        study = s.scalar(select(Study).where(Study.study_instance_uid == kid.StudyInstanceUID))
        assert study is not None and study.rule == "no-kids"
        assert study.outcome == inst.skip_reason
        job = s.get(Job, routed_id)
        assert job is not None
        assert (job.rule, job.destination_set, job.priority, job.destinations) == \
            ("research", "research", assembler.BATCH_PRIORITY, "RES@127.0.0.1:105")
        job = s.get(Job, plain_id)
        assert job is not None
        assert (job.rule, job.destination_set, job.priority, job.destinations) == \
            ("default", "", assembler.LIVE_PRIORITY, "")
    from worker.ops.metrics import routing_family
    samples = {(m.labels["rule"], m.labels["decision"]): m.value
               for m in routing_family(rt.db).samples}
    assert samples == {("no-kids", "skipped"): 1.0, ("research", "admitted"): 1.0,
                       ("default", "admitted"): 1.0}


# -- real peers ---------------------------------------------------------------------------

FIVE_RULES = """\
destinations = "{default}"

[destination_sets]
research = "{research}"

[[rules]]
name = "no-icu-portables"
condition = 'StationName matches "^ICU" and ViewPosition == "AP"'
action = "skip"
reason = "ICU portables are excluded"

[[rules]]
name = "no-children"
condition = "PatientAgeYears < 18"
action = "skip"
reason = "patients under 18 are excluded"

[[rules]]
name = "no-extremities"
condition = 'BodyPartExamined exists and BodyPartExamined not in ["CHEST", "THORAX"]'
action = "skip"
reason = "not a chest study"

[[rules]]
name = "research-room"
condition = 'StationName == "CHEST_ROOM_1"'
action = "process"
priority = "batch"
destinations = "research"

[[rules]]
name = "unlisted-stations"
condition = 'StationName missing or StationName not in ["CHEST_ROOM_1", "CHEST_ROOM_2"]'
action = "skip"
reason = "station not in the research protocol"
"""


def _copy(src: Path, out: Path, **tags: str) -> Path:
    ds = dcmread(src)
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    for k, v in tags.items():
        setattr(ds, k, v)
    ds.save_as(out, enforce_file_format=True)
    return out


def five_studies(rg1: Path, folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return {
        "allowed": _copy(rg1, folder / "allowed.dcm", StationName="CHEST_ROOM_1",
                         PatientAge="054Y"),
        "other": _copy(rg1, folder / "other.dcm", StationName="CHEST_ROOM_2",
                       PatientAge="061Y"),
        "child": _copy(rg1, folder / "child.dcm", StationName="CHEST_ROOM_1",
                       PatientAge="007Y"),
        "icu": _copy(rg1, folder / "icu.dcm", StationName="ICU_3", ViewPosition="AP",
                     PatientAge="070Y"),
        "extremity": _copy(sample_file("RG3_UNCR.dcm"), folder / "extremity.dcm"),
    }


EXPECTED_SKIPS = {"child": "skipped by rule 'no-children': patients under 18 are excluded",
                  "icu": "skipped by rule 'no-icu-portables': ICU portables are excluded",
                  "extremity": "skipped by rule 'no-extremities': not a chest study"}


def study_of(path: Path) -> str:
    return str(dcmread(path, stop_before_pixels=True).StudyInstanceUID)


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "cxr-gateway"), *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **(env or {})})


def wait_for(predicate, what: str, timeout: float = 180.0):  # type: ignore[no-untyped-def]
    return peers.wait_until(predicate, what, timeout)


def assembled(db: Database, study_uids: list[str]) -> dict[str, Study] | None:
    with db.session() as s:
        rows = s.scalars(select(Study).where(Study.study_instance_uid.in_(study_uids))).all()
        done = {r.study_instance_uid: r for r in rows if r.assembled_at is not None}
    return done if len(done) == len(study_uids) else None


@pytest.fixture
def two_pacs(tmp_path: Path):  # type: ignore[no-untyped-def]
    default = StoreSCP(tmp_path / "default-pacs", "DEFPACS")
    research = StoreSCP(tmp_path / "research-pacs", "RESPACS")
    yield default, research
    default.stop()
    research.stop()


@pytest.mark.integration
def test_five_studies_in_one_association_go_where_the_rules_say(
        serve_factory, two_pacs, rg1: Path, tmp_path: Path) -> None:
    default, research = two_pacs
    cfg = tmp_path / "site.toml"
    cfg.write_text(FIVE_RULES.format(default=default.destination,
                                     research=research.destination))
    files = five_studies(rg1, tmp_path / "in")
    srv = serve_factory.new({"CXR_CONFIG_FILE": str(cfg)}).start()
    sent = srv.storescu(*files.values(), extra=("-v",))  # one association, five instances
    assert sent.returncode == 0, sent.stderr
    assert sent.stderr.count("Store Response (Success)") == 5, sent.stderr
    assert sent.stderr.count("Association Accepted") == 1, sent.stderr
    (sr_research,) = research.wait_files(1)
    (sr_default,) = default.wait_files(1)
    assert study_of(sr_research) == study_of(files["allowed"])
    assert study_of(sr_default) == study_of(files["other"])
    db = Database(f"sqlite:///{srv.data_dir / 'gateway.db'}")
    studies = wait_for(lambda: assembled(db, [study_of(p) for p in files.values()]),
                       "five studies assembled")
    for name, reason in EXPECTED_SKIPS.items():
        assert studies[study_of(files[name])].outcome == reason
    assert studies[study_of(files["allowed"])].rule == "research-room"
    assert studies[study_of(files["other"])].rule == "default"
    with db.session() as s:
        jobs = {j.study_instance_uid: j for j in s.scalars(select(Job)).all()}
        skipped = s.scalars(select(Instance).where(Instance.admission == "skipped")).all()
    assert set(jobs) == {study_of(files["allowed"]), study_of(files["other"])}
    routed = jobs[study_of(files["allowed"])]
    assert (routed.rule, routed.destination_set, routed.priority) == \
        ("research-room", "research", assembler.BATCH_PRIORITY)
    assert jobs[study_of(files["other"])].priority == assembler.LIVE_PRIORITY
    assert sorted(i.skip_reason for i in skipped) == sorted(EXPECTED_SKIPS.values())
    env = {"CXR_CONFIG_FILE": str(cfg)}
    listed = cli("studies", "list", "--outcome", "skipped", "--data-dir", str(srv.data_dir),
                 env=env)
    assert listed.returncode == 0, listed.stderr
    for name, reason in EXPECTED_SKIPS.items():
        (line,) = [ln for ln in listed.stdout.splitlines() if study_of(files[name]) in ln]
        assert reason in line
    for name in ("allowed", "other"):
        assert study_of(files[name]) not in listed.stdout
    shown = cli("studies", "show", study_of(files["allowed"]), "--data-dir",
                str(srv.data_dir), env=env)
    assert "by rule 'research-room'" in shown.stdout, shown.stdout
    metrics = wait_for(lambda: _metrics(srv.api_port), "metrics")
    assert 'cxr_routing_decisions_total{decision="skipped",rule="no-children"} 1.0' in metrics
    assert 'cxr_routing_decisions_total{decision="admitted",rule="research-room"} 1.0' \
        in metrics
    time.sleep(1.0)  # nothing more arrives: one SR each
    assert len(research.files()) == len(default.files()) == 1
    # `rules test` on the same files: the same decisions, and nothing stored anywhere
    scratch = tmp_path / "scratch-data"
    tested = cli("rules", "test", "--config", str(cfg), "--calling-ae", "TESTSCU",
                 *map(str, files.values()), env={"CXR_DATA_DIR": str(scratch)})
    assert tested.returncode == 0, tested.stderr
    out = tested.stdout
    for path in files.values():
        outcome = studies[study_of(path)].outcome
        assert f"study {study_of(path)}: {outcome} (decided by rule" in out
    assert "rule 'no-icu-portables' did not match" in out  # why the others did not
    assert "rule 'no-children' matched (PatientAgeYears < ...: true)" in out
    assert "admitted by rule 'research-room': a job at batch priority, its SR to " \
        f"destination set 'research' ({research.destination})" in out
    for value in ("007Y", "054Y", "061Y", "070Y", "ICU_3", "CHEST_ROOM_1", "CHEST_ROOM_2"):
        assert value not in out  # keywords and true/false, never the tags' values
    assert not scratch.exists()
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Job)) == 2
    spooled = [p for p in (srv.data_dir / "spool").rglob("*") if p.is_file()]
    assert len([p for p in spooled if p.suffix != ".tmp"]) <= 5


def _metrics(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            text = r.read().decode()
    except OSError:
        return ""
    return text if "cxr_routing_decisions" in text else ""


@pytest.mark.integration
def test_rules_check_reports_typo_regex_and_destination_with_lines(tmp_path: Path) -> None:
    cfg = tmp_path / "site.toml"
    cfg.write_text(BROKEN)
    out = cli("rules", "check", "--config", str(cfg))
    assert out.returncode == 2
    errors = out.stderr.splitlines()
    assert len(errors) == 3, out.stderr
    assert errors[0].startswith(f"error: {cfg}:8: ") and "StatoinName" in errors[0]
    assert errors[1].startswith(f"error: {cfg}:15: ") and "regular expression" in errors[1]
    assert errors[2].startswith(f"error: {cfg}:21: ") and "reserch" in errors[2]
    cfg.write_text(GOOD)
    ok = cli("--config", str(cfg), "rules", "check")
    assert ok.returncode == 0, ok.stderr
    assert "1 rule(s) (first)" in ok.stdout


@pytest.mark.integration
def test_serve_reloads_rules_on_sighup_and_keeps_them_when_the_file_is_broken(
        serve_factory, storescp: StoreSCP, rg1: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "site.toml"
    skip_room = ('[[rules]]\nname = "{name}"\ncondition = \'StationName == "{station}"\'\n'
                 'action = "skip"\nreason = "{name}"\n')
    cfg.write_text(f'destinations = "{storescp.destination}"\n'
                   + skip_room.format(name="old-rule", station="ROOM_OLD"))
    srv = serve_factory.new({"CXR_CONFIG_FILE": str(cfg)}).start()
    db = Database(f"sqlite:///{srv.data_dir / 'gateway.db'}")
    cfg.write_text(BROKEN)
    assert srv.proc is not None
    srv.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "reload refused" in srv.log.read_text(), "the refusal logged")
    old = _copy(rg1, tmp_path / "old.dcm", StationName="ROOM_OLD")
    assert srv.storescu(old).returncode == 0
    studies = wait_for(lambda: assembled(db, [study_of(old)]), "assembled")
    assert studies[study_of(old)].outcome == "skipped by rule 'old-rule': old-rule"
    log = srv.log.read_text()
    assert f"{cfg}:8:" in log and "StatoinName" in log
    cfg.write_text(f'destinations = "{storescp.destination}"\n'
                   + skip_room.format(name="new-rule", station="ROOM_NEW"))
    srv.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "routing rules reloaded" in srv.log.read_text(), "the reload logged")
    new, again = (_copy(rg1, tmp_path / f"{n}.dcm", StationName=s)
                  for n, s in (("new", "ROOM_NEW"), ("again", "ROOM_OLD")))
    assert srv.storescu(new, again).returncode == 0
    studies = wait_for(lambda: assembled(db, [study_of(new), study_of(again)]), "assembled")
    assert studies[study_of(new)].outcome == "skipped by rule 'new-rule': new-rule"
    assert studies[study_of(again)].outcome.startswith("admitted")


@pytest.mark.integration
def test_a_routed_study_gets_a_real_reading_from_the_openai_backend(
        serve_factory, two_pacs, vllm_standin, rg1: Path, tmp_path: Path) -> None:
    from dicom_gateway.documents import codes as sr_codes
    from tests.vllm_standin import labels_for

    default, research = two_pacs
    cfg = tmp_path / "site.toml"
    cfg.write_text(FIVE_RULES.format(default=default.destination,
                                     research=research.destination))
    path = _copy(rg1, tmp_path / "allowed.dcm", StationName="CHEST_ROOM_1", PatientAge="054Y")
    srv = serve_factory.new({"CXR_CONFIG_FILE": str(cfg),
                             **backend_env("openai", standin_url=vllm_standin.url)}).start()
    assert srv.storescu(path).returncode == 0
    (sr_path,) = research.wait_files(1)
    sr = dcmread(sr_path)
    assert sr.StudyInstanceUID == study_of(path)
    assert "MOCK" not in sr.SeriesDescription
    first = vllm_standin.chat_requests("findings")[0]
    labels = labels_for(first.image_sha256)
    from highdicom.sr.utils import find_content_items
    coded = [i.ConceptCodeSequence[0].CodeMeaning
             for i in find_content_items(sr, value_type="CODE", recursive=True)
             if i.ConceptNameCodeSequence[0].CodeValue == "121071"]
    assert coded == [sr_codes.LABEL_CODES[label].meaning for label in labels]
    assert [r.turn for r in vllm_standin.chat_requests()] == ["findings", "report"]
    assert default.files() == []


def test_the_readme_examples_are_valid_rules() -> None:
    import re

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme[readme.index("## Routing rules"):]
    section = section[:section.index("\n## ", 5)]
    blocks = re.findall(r"```toml\n(.*?)```", section, re.S)
    assert len(blocks) >= 3
    for block in blocks:
        rules, problems = check_text(block)
        assert problems == [] and rules.rules, block


@pytest.mark.integration
def test_serve_refuses_to_start_on_a_typo_in_a_rule(tmp_path: Path) -> None:
    from tests.peers import free_port

    cfg = tmp_path / "site.toml"
    cfg.write_text(GOOD.replace("StationName", "StatoinName"))
    out = cli("--config", str(cfg), "serve", "--data-dir", str(tmp_path / "d"), "--port",
              str(free_port()), "--api-port", "0")
    assert out.returncode == 2
    assert "did you mean 'StationName'" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.integration
def test_the_dashboard_names_the_deciding_rule(serve_factory, two_pacs, rg1: Path,
                                               tmp_path: Path) -> None:
    """Headless Chromium: the skipped-studies table and the job view name the rule."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.test_operations import dashboard_login

    default, research = two_pacs
    cfg = tmp_path / "site.toml"
    cfg.write_text(FIVE_RULES.format(default=default.destination,
                                     research=research.destination))
    files = five_studies(rg1, tmp_path / "in")
    token = "routing-dashboard-token-abcdefghij"
    srv = serve_factory.new({"CXR_CONFIG_FILE": str(cfg), "CXR_API_TOKEN": token}).start()
    assert srv.storescu(files["allowed"], files["child"]).returncode == 0
    research.wait_files(1)
    browser, base_url = dashboard_login(srv.api_port, token)
    try:
        wait = WebDriverWait(browser, 120)
        row = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR,
                                                         "#skipped tr.skipped")))
        assert row.find_element(By.CSS_SELECTOR, "td.rule").text == "no-children"
        assert "patients under 18 are excluded" in row.text
        wait.until(ec.text_to_be_present_in_element((By.ID, "detail-rule"),
                                                    "routing rule: research-room"))
        assert "destination set research" in browser.find_element(By.ID, "detail-rule").text
    finally:
        browser.quit()
