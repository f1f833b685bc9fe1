"""The mock backend: deterministic text for wiring, never a reading.

By default it asserts nothing: its findings reply carries no ``<answer>``, in the spirit
of NVIDIA's wrapper mock ("it does not assert clinical findings"), so the SR it leads to
has no coded finding.  A wiring test that needs labels names them explicitly
(``CXR_MOCK_LABELS``); the reply then carries exactly those, still marked as mock in
every artefact.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from models.backend import BackendInfo, Generation, ModelRequest, pinned_revision
from models.labels import CHEXPERT_LABELS
from models.prompts import REPORT_PROMPT

MOCK_NOTICE = "MOCK BACKEND OUTPUT - not produced by NV-Reason-CXR-3B; wiring test only."
MOCK_FINDINGS = (
    f"{MOCK_NOTICE} This deterministic response verifies input loading, prompt wiring, "
    "and JSON output only; it does not assert clinical findings."
)
MOCK_REPORT = (
    f"{MOCK_NOTICE}\n"
    "INDICATION: Not provided to the mock.\n"
    "COMPARISON: None.\n"
    "TECHNIQUE: Single frontal view of the chest (as received).\n"
    "FINDINGS: Lungs: Mock placeholder text; no image was read.\n"
    "Heart: Mock placeholder text.\n"
    "IMPRESSION:\n"
    "1. Mock output for pipeline testing; no reading was performed.\n"
)


def mock_followup(earlier_turns: int) -> str:
    """The mock's reply to a follow-up question: labelled, and asserting nothing."""
    return (
        f"<think> {MOCK_NOTICE} A follow-up question arrived after {earlier_turns} earlier "
        "turn(s) of this conversation; no image was read. </think>\n"
        "<answer> MOCK reply: the mock backend does not answer questions; no reading was "
        "performed. </answer>"
    )


def describe_mock(model_id: str, revision: str | None = None,
                  labels: Sequence[str] = ()) -> BackendInfo:
    """The mock's identity: always marked as mock; the revision as declared, else the pin."""
    return BackendInfo(
        name="mock", model_id=model_id, model_revision=revision or pinned_revision(model_id),
        is_mock=True, settings={"labels": ", ".join(labels)} if labels else {},
    )


class MockBackend:
    """Returns canned, clearly labelled replies; never loads a model."""

    def __init__(self, model_id: str = "nvidia/NV-Reason-CXR-3B",
                 latency_seconds: float = 0.0, response: str | None = None,
                 labels: Sequence[str] = (), revision: str | None = None) -> None:
        unknown = [lab for lab in labels if lab not in CHEXPERT_LABELS]
        if unknown:
            raise ValueError(f"mock labels must be CheXpert labels, not {unknown}")
        self.latency_seconds = latency_seconds
        self.response = response
        self.labels = tuple(labels)
        self.info = describe_mock(model_id, revision, self.labels)

    def generate(self, requests: Sequence[ModelRequest]) -> list[Generation]:
        out = []
        for req in requests:
            start = time.perf_counter()
            text = self._reply(req)
            if self.latency_seconds:
                time.sleep(self.latency_seconds)
            out.append(Generation(text=text, generated_tokens=0,
                                  seconds=time.perf_counter() - start))
        return out

    def _reply(self, req: ModelRequest) -> str:
        if self.response is not None and len(req.turns) == 1:
            return self.response  # a fixture's canned response, verbatim
        if req.turns[-1].text == REPORT_PROMPT:
            return MOCK_REPORT
        if len(req.turns) > 1:  # a follow-up question after the stored turns
            return mock_followup(len(req.turns) - 1)
        if not self.labels:
            return MOCK_FINDINGS
        return (
            f"<think> {MOCK_NOTICE} The labels below were named by the configuration "
            "(CXR_MOCK_LABELS) for a wiring test; no image was read. </think>\n"
            f"<answer> {', '.join(self.labels)} </answer>"
        )
