"""The answer parser against an independent copy of the training parser, and the report."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from models.parsing import ANSWER_STATUSES, OK, parse_output, parse_report

# The paper's Φ as the training reward wrote it (NVIDIA-Medtech/NV-Reason-CXR,
# train/vlm_rewards.py, accuracy_reward), re-implemented here from that description and
# nothing else: the labels our parser returns must be exactly this set.
CX = ["Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Enlarged Cardiomediastinum",
      "Fracture", "Lung Lesion", "Lung Opacity", "No Finding", "Pleural Effusion",
      "Pleural Other", "Pneumonia", "Pneumothorax", "Support Devices"]


def training_parser(content: str) -> set[str] | None:
    m = re.search(r"<answer>(.*?)</answer>", content, re.DOTALL)
    if not m:
        return None
    return {e.strip().lower() for e in m.group(1).strip().split(",")} & {c.lower() for c in CX}


FALLBACK = "I'm sorry, I'm specialized in medical chest X-ray analysis."
T = "<think> The heart is normal in size. </think>\n"

# (answer text, generated tokens or None, expected status, extra checks)
CASES: list[tuple[str, str, int | None, str]] = [
    ("fallback plain", FALLBACK, None, "refused"),
    ("fallback in answer", f"<answer>{FALLBACK}</answer>", None, "refused"),
    ("fallback curly apostrophe", T + "<answer> I\u2019m sorry, I\u2019m specialized in "
     "medical chest X-ray analysis. </answer>", None, "refused"),
    ("upstream refusal", "Please provide a frontal chest X-ray image.", None, "refused"),
    ("empty answer", T + "<answer>  </answer>", None, "no_labels"),
    ("Normal is not a label", T + "<answer> Normal </answer>", None, "no_labels"),
    ("only unknown items", T + "<answer> Granuloma, Pleural Thickening </answer>", None,
     "no_labels"),
    ("near misses only", T + "<answer> Pleural_Effusion, pleural effusions </answer>", None,
     "no_labels"),
    ("valid plus unknown", T + "<answer> Edema, Granuloma </answer>", None, "ok"),
    ("valid plus near miss", T + "<answer> Edema, Pleural_Effusion </answer>", None, "ok"),
    ("truncated inside think", "<think> The left costophrenic angle is", 2048, "truncated"),
    ("unterminated think, no limit known", "<think> The left costophrenic", None, "truncated"),
    ("truncated inside answer", T + "<answer> Edema, Pleural Eff", 2048, "truncated"),
    ("open answer tag", T + "<answer> Edema, Cardiomegaly", None, "truncated"),
    ("limit hit with no tags", "The image shows " * 50, 2048, "truncated"),
    ("no tags at all", "The lungs look clear to me.", None, "unparseable"),
    ("think without answer", T + "And that is all.", None, "unparseable"),
    ("upper case", T + "<answer> PLEURAL EFFUSION, CARDIOMEGALY </answer>", None, "ok"),
    ("lower case", T + "<answer> pneumothorax, support devices </answer>", None, "ok"),
    ("duplicates", T + "<answer> Edema, edema, EDEMA </answer>", None, "ok"),
    ("No Finding with another label", T + "<answer> No Finding, Cardiomegaly </answer>",
     None, "ok"),
    ("No Finding alone", T + "<answer> No Finding </answer>", None, "ok"),
    ("all fourteen", T + f"<answer> {', '.join(CX)} </answer>", None, "ok"),
    ("answer complete at the limit", T + "<answer> Edema </answer>", 2048, "ok"),
    ("two answers: first counts", T + "<answer> Edema </answer><answer> Fracture </answer>",
     None, "ok"),
    ("missing think", "<answer> Cardiomegaly </answer>", None, "ok"),
    ("no spaces in tags", "<think>x</think><answer>Lung Opacity,Atelectasis</answer>", None,
     "ok"),
    ("fallback next to a label", T + f"<answer> Edema, {FALLBACK} </answer>", None, "ok"),
]


@pytest.mark.parametrize(("name", "text", "tokens", "status"), CASES,
                         ids=[c[0] for c in CASES])
def test_status_and_labels_equal_the_training_parser(name: str, text: str, tokens: int | None,
                                                    status: str) -> None:
    p = parse_output(text, tokens, 2048)
    assert p.status == status, name
    expected = training_parser(text)
    if status == "truncated" or expected is None:
        assert p.labels == ()
    else:
        assert {label.lower() for label in p.labels} == expected
        assert len(p.labels) == len(set(p.labels))  # each label once
    if status != "ok":
        assert p.labels == ()  # nothing that is not a reading carries a label


def test_the_table_covers_every_status_and_agrees_with_the_training_parser() -> None:
    """The table itself: every status the parser can give is expected of two cases or
    more, names are unique, and each expected status agrees with the independent copy
    of the training parser (a reading exactly when it finds a label), so a mislabelled
    case cannot make the test above pass for the wrong reason."""
    counts = Counter(status for *_, status in CASES)
    assert set(counts) == set(ANSWER_STATUSES) and min(counts.values()) >= 2, counts
    assert len({name for name, *_ in CASES}) == len(CASES)
    for name, text, _tokens, status in CASES:
        assert (status == OK) == bool(training_parser(text)), name


def test_near_misses_and_unknown_are_reported_beside_not_in() -> None:
    p = parse_output(T + "<answer> Edema, Pleural_Effusion, Pleural Thickening </answer>")
    assert p.labels == ("Edema",)
    assert p.near_misses == {"Pleural_Effusion": "Pleural Effusion"}
    assert p.unknown == ("Pleural Thickening",)


def test_format_and_reasoning() -> None:
    p = parse_output("<think> blunted angle </think>\n<answer> Pleural Effusion </answer>")
    assert p.format_ok and p.reasoning == "blunted angle"
    assert not parse_output("<think>a</think><think>b</think><answer>Edema</answer>").format_ok
    cut = parse_output("<think> the heart is enlarged and", 100, 100)
    assert cut.truncated and cut.hit_token_limit and cut.reasoning == "the heart is enlarged and"


def test_no_finding_with_another_label_is_noted() -> None:
    p = parse_output(T + "<answer> No Finding, Cardiomegaly </answer>")
    assert p.labels == ("No Finding", "Cardiomegaly") and p.notes


# -- the structured report ---------------------------------------------------------------

# The paper's template (section 2.5) with a preamble, a think block, EXAMINATION, an
# unknown heading, RECOMMENDATIONS and a findings sentence that begins with "Impression".
REPORT_SENTENCES = {
    "": ["Here is the structured report for this study."],
    "EXAMINATION": ["CHEST (PA AND LAT)."],
    "INDICATION": ["Not provided."],
    "COMPARISON": ["None available."],
    "TECHNIQUE": ["PA view of the chest."],
    "FINDINGS": [
        "Medical devices: Chest tube at right lung base.",
        "Central airways: Trachea and main bronchi patent.",
        # a finding broken across lines stays one item (issue 24)
        "Lungs and pleural space: Small right pneumothorax; small right pleural effusion. "
        "Impression of a faint left basal opacity is noted.",
        "Mediastinum and hila: Mediastinum normal; no adenopathy.",
        "Heart: Enlarged heart.",
        "Upper abdomen and diaphragm: No free subdiaphragmatic air.",
        "Bones and soft tissues: Intact ribs.",
    ],
    "IMPRESSION": ["Small right-sided pneumothorax.",
                   "Small right pleural effusion with parenchymal opacity.", "Enlarged heart"],
    "RECOMMENDATIONS": ["Clinical correlation is advised."],
    "QUALITY": ["Adequate inspiration and penetration."],
}
REPORT = (
    "<think> I will follow the template. </think>\n"
    "Here is the structured report for this study.\n"
    "EXAMINATION: CHEST (PA AND LAT).\n"
    "INDICATION: Not provided.\nCOMPARISON: None available.\n"
    "TECHNIQUE: PA view of the chest.\n"
    "FINDINGS: Medical devices: Chest tube at right lung base. Central airways: Trachea and "
    "main bronchi patent.\nLungs and pleural space: Small right pneumothorax; small right "
    "pleural effusion.\nImpression of a faint left basal opacity is noted.\n"
    "Mediastinum and hila: Mediastinum normal; no adenopathy. Heart: Enlarged heart.\n"
    "Upper abdomen and diaphragm: No free subdiaphragmatic air. Bones and soft tissues: "
    "Intact ribs.\n"
    "IMPRESSION:\n  \u2022 Small right-sided pneumothorax.\n"
    "  \u2022 Small right pleural effusion with parenchymal opacity.\n  \u2022 Enlarged heart\n"
    "RECOMMENDATIONS: Clinical correlation is advised.\n"
    "QUALITY: Adequate inspiration and penetration.\n"
)


def test_report_keeps_every_sentence_once_under_its_heading() -> None:
    r = parse_report(REPORT)
    assert r.reasoning == "I will follow the template."
    by_heading: dict[str, list[str]] = {}
    for sec in r.sections:
        by_heading.setdefault(sec.heading, []).extend(sec.items)
    assert by_heading == REPORT_SENTENCES
    assert [s.known for s in r.sections] == [False, True, True, True, True, True, True, True,
                                             False]


def test_report_markdown_and_lone_headings() -> None:
    r = parse_report("**FINDINGS:**\n- Lungs: clear\n## Impression\n- Normal chest.\n"
                     "### Follow Up\nNone.\nNORMAL\n")
    assert [(s.heading, s.items) for s in r.sections] == [
        ("FINDINGS", ("Lungs: clear",)), ("IMPRESSION", ("Normal chest.",)),
        ("Follow Up", ("None.\nNORMAL",))]  # a lone capitalised word stays text


def test_report_truncation_and_unsectioned_text() -> None:
    text = "The lungs are clear. " * 50
    r = parse_report(text, 4096, 4096)
    assert r.truncated
    assert [(s.heading, s.items) for s in r.sections] == [("", (text.strip(),))]
    cut = parse_report("<think> still thinking about the", 10, 4096)
    assert cut.truncated and cut.sections == () and cut.reasoning
