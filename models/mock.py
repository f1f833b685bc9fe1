"""The mock backend: deterministic text in the trained format, for wiring only.

Its output always says it is a mock, so no artefact it reaches can be mistaken for
a model's reading.  Labels are picked from a checksum of the image so that the
single- and multi-label paths downstream both get exercised.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence

from models.backend import BackendInfo, Generation, ModelRequest
from models.labels import CHEXPERT_LABELS, NO_FINDING
from models.prompts import REPORT_PROMPT

MOCK_NOTICE = "MOCK BACKEND OUTPUT - not produced by NV-Reason-CXR-3B; wiring test only."


def mock_labels(image_png: bytes) -> tuple[str, ...]:
    digest = hashlib.sha256(image_png).digest()
    count = digest[0] % 3
    if count == 0:
        return (NO_FINDING,)
    pool = [lab for lab in CHEXPERT_LABELS if lab != NO_FINDING]
    picked = {pool[b % len(pool)] for b in digest[1:1 + count]}
    return tuple(sorted(picked))


class MockBackend:
    """Returns canned, clearly labelled replies; never loads a model."""

    def __init__(self, model_id: str = "nvidia/NV-Reason-CXR-3B",
                 latency_seconds: float = 0.0, response: str | None = None) -> None:
        self.latency_seconds = latency_seconds
        self.response = response
        self.info = BackendInfo(
            name="mock", model_id=model_id, model_revision="mock", is_mock=True
        )

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
        labels = mock_labels(req.image_png)
        if req.turns[-1].text == REPORT_PROMPT:
            return (
                f"{MOCK_NOTICE}\n"
                "INDICATION: Not provided to the mock.\n"
                "COMPARISON: None.\n"
                "TECHNIQUE: Single frontal view of the chest (as received).\n"
                "FINDINGS:\n"
                f"Lungs: Mock placeholder text; placeholder labels {', '.join(labels)}.\n"
                "Heart and mediastinum: Mock placeholder text.\n"
                "IMPRESSION:\n"
                "1. Mock output for pipeline testing; no reading was performed.\n"
            )
        return (
            f"<think> {MOCK_NOTICE} The image arrived with a checksum-derived placeholder "
            "answer so the parser, the report and the delivery path can be exercised. "
            "No lung fields, heart border or devices were looked at. </think>\n"
            f"<answer> {', '.join(labels)} </answer>"
        )
