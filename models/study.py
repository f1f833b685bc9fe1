"""One study's two-turn conversation: findings, then the structured report.

Turn 2 is the same conversation (image in the first user turn, the first reply
verbatim) plus "Write a structured report.", as the public demo does it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from models.backend import Backend, Generation, ModelRequest, Turn
from models.parsing import ParsedOutput, ReportSections, parse_output, parse_report
from models.prompts import (
    DEFAULT_PROMPT,
    FINDINGS_MAX_NEW_TOKENS,
    REPORT_MAX_NEW_TOKENS,
    REPORT_PROMPT,
)


@dataclass(frozen=True)
class StudyResult:
    prompt: str
    findings: Generation
    parsed: ParsedOutput
    report: Generation | None
    sections: ReportSections | None


def findings_request(image_png: bytes, prompt: str = DEFAULT_PROMPT,
                     max_new_tokens: int = FINDINGS_MAX_NEW_TOKENS) -> ModelRequest:
    return ModelRequest(image_png, (Turn("user", prompt),), max_new_tokens)


def report_request(first: ModelRequest, first_reply: str,
                   max_new_tokens: int = REPORT_MAX_NEW_TOKENS) -> ModelRequest:
    turns = (*first.turns, Turn("assistant", first_reply), Turn("user", REPORT_PROMPT))
    return ModelRequest(first.image_png, turns, max_new_tokens)


def run_studies(backend: Backend, images: Sequence[bytes], prompt: str = DEFAULT_PROMPT,
                with_report: bool = True,
                findings_tokens: int = FINDINGS_MAX_NEW_TOKENS,
                report_tokens: int = REPORT_MAX_NEW_TOKENS) -> list[StudyResult]:
    """Both turns for a batch of studies: one batched call per turn."""
    firsts = [findings_request(img, prompt, findings_tokens) for img in images]
    gens = backend.generate(firsts)
    parsed = [parse_output(g.text, g.generated_tokens, findings_tokens) for g in gens]
    reports: list[Generation | None] = [None] * len(images)
    if with_report:
        seconds = [report_request(f, g.text, report_tokens) for f, g in zip(firsts, gens,
                                                                          strict=True)]
        reports = list(backend.generate(seconds))
    return [
        StudyResult(prompt, g, p, r, parse_report(r.text) if r else None)
        for g, p, r in zip(gens, parsed, reports, strict=True)
    ]

