"""The answer parser (training parser plus near misses) and report sections."""

from __future__ import annotations

from models.parsing import parse_output, parse_report


def test_trained_format_multi_label() -> None:
    p = parse_output("<think> blunted angle </think>\n<answer> Pleural Effusion, edema </answer>")
    assert p.labels == ("Pleural Effusion", "Edema")
    assert p.format_ok and p.status == "ok" and p.reasoning == "blunted angle"


def test_near_misses_and_unknown_are_reported() -> None:
    p = parse_output("<think>x</think><answer>pleural_effusion, Pleural Thickening</answer>")
    assert p.labels == ("Pleural Effusion",)
    assert p.near_misses == {"pleural_effusion": "Pleural Effusion"}
    assert p.unknown == ("Pleural Thickening",)


def test_refusal_is_never_no_finding() -> None:
    p = parse_output("Please provide a frontal chest X-ray image.")
    assert p.refused and p.labels == () and p.status == "refused"


def test_missing_answer_is_unparseable() -> None:
    p = parse_output("<think>reasoning</think> and then nothing")
    assert p.status == "unparseable" and p.labels == ()


def test_truncation_by_token_limit_and_by_tags() -> None:
    assert parse_output("<think> long", 2048, 2048).status == "truncated"
    assert parse_output("<think> a </think><answer> Edema").truncated


def test_doubled_tags_not_format_ok() -> None:
    p = parse_output("<think>a</think><think>b</think><answer>Edema</answer>")
    assert not p.format_ok and p.labels == ("Edema",)


def test_report_sections() -> None:
    r = parse_report(
        "INDICATION: cough\nTECHNIQUE: PA\nFINDINGS:\nLungs: clear.\nHeart: normal size.\n"
        "IMPRESSION:\n1. No acute process.\n2. Stable."
    )
    assert r.indication == "cough" and r.comparison == "" and r.technique == "PA"
    assert r.findings == (("Lungs", "clear."), ("Heart", "normal size."))
    assert r.impression == ("No acute process.", "Stable.")


def test_empty_answer_is_ok_with_no_labels_not_no_finding() -> None:
    p = parse_output("<think> x </think><answer>  </answer>")
    assert p.status == "ok" and p.labels == () and p.format_ok


def test_missing_think_keeps_labels_but_not_format() -> None:
    p = parse_output("<answer> Cardiomegaly </answer>")
    assert p.labels == ("Cardiomegaly",) and not p.format_ok and p.reasoning == ""


def test_truncated_reasoning_is_kept() -> None:
    p = parse_output("<think> the heart is enlarged and", 100, 100)
    assert p.truncated and p.reasoning == "the heart is enlarged and" and p.labels == ()


def test_long_report_without_sections_invents_nothing() -> None:
    text = "The lungs are clear. " * 500
    r = parse_report(text)
    assert r.unsectioned == text.strip()
    assert (r.indication, r.comparison, r.technique, r.findings, r.impression) == (
        "", "", "", (), ())


def test_report_with_markdown_headings_and_bullets() -> None:
    r = parse_report("**FINDINGS:**\n- Lungs: clear\n- Pleura: no effusion\n"
                     "## IMPRESSION\n- Normal chest.\n- No change.")
    assert r.findings == (("Lungs", "clear"), ("Pleura", "no effusion"))
    assert r.impression == ("Normal chest.", "No change.")
    assert r.indication == ""
