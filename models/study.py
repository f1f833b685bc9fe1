"""One study's two-turn conversation: findings, then the structured report.

Turn 2 is the same conversation (image in the first user turn, the first reply
verbatim) plus "Write a structured report.", as the public demo does it.  It runs only
after a first turn that gave labels: a report written after a refusal or a cut-off
answer would read as a reading that never happened.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace

from models.backend import Backend, Generation, ModelRequest, Turn
from models.parsing import OK, ParsedOutput, ParsedReport, parse_output, parse_report
from models.prompts import (
    DEFAULT_PROMPT,
    FINDINGS_MAX_NEW_TOKENS,
    REPORT_MAX_NEW_TOKENS,
    REPORT_PROMPT,
)

MOCK = "mock"


@dataclass(frozen=True)
class StudyResult:
    prompt: str
    findings: Generation
    parsed: ParsedOutput
    report: Generation | None
    parsed_report: ParsedReport | None
    is_mock: bool = False
    findings_max_new_tokens: int = FINDINGS_MAX_NEW_TOKENS

    @property
    def status(self) -> str:
        """What happened: a mock never reads an image, whatever its text says."""
        return MOCK if self.is_mock else self.parsed.status

    @property
    def labels(self) -> tuple[str, ...]:
        """Labels worth coding: only from an ``ok`` answer (or a mock told to name some)."""
        return self.parsed.labels if self.parsed.status == OK else ()


def findings_request(image_png: bytes, prompt: str = DEFAULT_PROMPT,
                     max_new_tokens: int = FINDINGS_MAX_NEW_TOKENS) -> ModelRequest:
    return ModelRequest(image_png, (Turn("user", prompt),), max_new_tokens)


def report_request(first: ModelRequest, first_reply: str,
                   max_new_tokens: int = REPORT_MAX_NEW_TOKENS) -> ModelRequest:
    turns = (*first.turns, Turn("assistant", first_reply), Turn("user", REPORT_PROMPT))
    return ModelRequest(first.image_png, turns, max_new_tokens, first.priority)


def run_studies(backend: Backend, images: Sequence[bytes], prompt: str = DEFAULT_PROMPT,
                with_report: bool = True,
                findings_tokens: int = FINDINGS_MAX_NEW_TOKENS,
                report_tokens: int = REPORT_MAX_NEW_TOKENS) -> list[StudyResult]:
    """Both turns for a batch of studies: one batched call per turn (a GPU's batch)."""
    firsts = [findings_request(img, prompt, findings_tokens) for img in images]
    gens = backend.generate(firsts)
    parsed = [parse_output(g.text, g.generated_tokens, findings_tokens) for g in gens]
    reports: list[Generation | None] = [None] * len(images)
    if with_report:
        wanted = [i for i, p in enumerate(parsed) if p.status == OK]
        seconds = [report_request(firsts[i], gens[i].text, report_tokens) for i in wanted]
        for i, gen in zip(wanted, backend.generate(seconds) if seconds else [], strict=True):
            reports[i] = gen
    return [_result(backend, prompt, g, p, r, findings_tokens, report_tokens)
            for g, p, r in zip(gens, parsed, reports, strict=True)]


def run_study(backend: Backend, image: bytes, prompt: str = DEFAULT_PROMPT,
              with_report: bool = True,
              findings_tokens: int = FINDINGS_MAX_NEW_TOKENS,
              report_tokens: int = REPORT_MAX_NEW_TOKENS) -> StudyResult:
    """Both turns for one study on its own: turn 2 follows its own turn 1 at once.

    For a server that batches whatever it holds (vLLM), many of these run side by side;
    nothing waits for another study's slower reply, unlike ``run_studies``.
    """
    first = findings_request(image, prompt, findings_tokens)
    (gen,) = backend.generate([first])
    parsed = parse_output(gen.text, gen.generated_tokens, findings_tokens)
    report: Generation | None = None
    if with_report and parsed.status == OK:
        (report,) = backend.generate([report_request(first, gen.text, report_tokens)])
    return _result(backend, prompt, gen, parsed, report, findings_tokens, report_tokens)


async def arun_study(backend: Backend, ask: Callable[[ModelRequest], Awaitable[Generation]],
                     image: bytes, priority: int = 0, prompt: str = DEFAULT_PROMPT,
                     findings_tokens: int = FINDINGS_MAX_NEW_TOKENS,
                     report_tokens: int = REPORT_MAX_NEW_TOKENS) -> StudyResult:
    """``run_study`` on an event loop: ``ask`` sends one request (the in-flight loop's
    pooled client), both turns at the study's engine ``priority``."""
    first = findings_request(image, prompt, findings_tokens)
    first = replace(first, priority=priority)
    gen = await ask(first)
    parsed = parse_output(gen.text, gen.generated_tokens, findings_tokens)
    report: Generation | None = None
    if parsed.status == OK:
        report = await ask(replace(report_request(first, gen.text, report_tokens),
                                   priority=priority))
    return _result(backend, prompt, gen, parsed, report, findings_tokens, report_tokens)


def serves_concurrently(backend: Backend) -> bool:
    """Whether the backend is a server whose requests are independent (``openai``): the
    worker then keeps many studies in flight instead of running GPU batches."""
    return bool(getattr(backend, "concurrent_requests", False))


def _result(backend: Backend, prompt: str, gen: Generation, parsed: ParsedOutput,
            report: Generation | None, findings_tokens: int,
            report_tokens: int) -> StudyResult:
    return StudyResult(
        prompt, gen, parsed, report,
        parse_report(report.text, report.generated_tokens, report_tokens) if report else None,
        is_mock=backend.info.is_mock, findings_max_new_tokens=findings_tokens)
