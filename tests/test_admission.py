"""Admission rules on header facts (pure functions)."""

from __future__ import annotations

from dicom_gateway.routing.admission import CR, DX_PRESENTATION, Candidate, admit, rejection_reason


def cand(uid: str, **kw: object) -> Candidate:
    base: dict[str, object] = dict(sop_instance_uid=uid, sop_class_uid=CR, modality="CR",
                                   body_part="CHEST", view_position="PA")
    base.update(kw)
    return Candidate(**base)  # type: ignore[arg-type]


def test_pa_preferred_over_ap_and_others_get_reasons() -> None:
    d = admit([cand("1.1", view_position="AP"), cand("1.2"), cand("1.3", view_position="LL")])
    assert d.admitted == "1.2"
    assert d.skipped["1.3"] == "lateral view (ViewPosition LL)"
    assert d.skipped["1.1"].startswith("another frontal image preferred")


def test_for_presentation_preferred_over_for_processing() -> None:
    d = admit([cand("1.1", sop_class_uid=DX_PRESENTATION, modality="DX",
                    presentation_intent="FOR PROCESSING"),
               cand("1.2", sop_class_uid=DX_PRESENTATION, modality="DX", view_position="AP",
                    presentation_intent="FOR PRESENTATION")])
    assert d.admitted == "1.2"


def test_reasons() -> None:
    assert rejection_reason(cand("1", modality="US", sop_class_uid="1.2.840.10008.5.1.4.1.1.6.1")
                            ) == "not a radiograph (modality US)"
    assert rejection_reason(cand("1", body_part="HAND")) == "not chest (BodyPartExamined HAND)"
    assert rejection_reason(cand("1", has_pixels=False)) == "not an image (no pixel data)"
    no_view = rejection_reason(cand("1", view_position=""))
    assert no_view == "not a frontal view (ViewPosition missing)"
    assert "not identified as chest" in (rejection_reason(cand("1", body_part="")) or "")
    assert rejection_reason(cand("1", body_part="", descriptions="CHEST PA")) is None


def test_no_eligible_image_gives_study_reason() -> None:
    d = admit([cand("1.1", view_position="LL")])
    assert d.admitted is None
    assert d.study_reason == "no frontal chest radiograph: lateral view (ViewPosition LL)"
