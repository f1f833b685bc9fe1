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
