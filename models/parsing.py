"""Parsing the model's output.

Labels follow the training reward's parser (``accuracy_reward``): the text inside
``<answer>`` split on commas, matched case-insensitively against the 14 CheXpert
strings.  We add near-miss normalisation (case, spaces, underscores, plurals are *not*
guessed) and report it as such, and we never turn a missing ``<answer>`` into
"No Finding": that is a refusal or an unparseable output.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from models.labels import BY_LOWER

_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_THINK = re.compile(r"<think>(.*?)</think>", re.DOTALL)
_FORMAT = re.compile(r"^\s*<think>.*?</think>\s*<answer>.*?</answer>\s*$", re.DOTALL)
_REFUSAL = re.compile(
    r"please provide (a|an) (frontal )?chest x-?ray|not a (frontal )?chest x-?ray|"
    r"cannot (analy[sz]e|interpret) (this|the) image",
    re.IGNORECASE,
)
_SQUASH = re.compile(r"[\s_\-]+")


def _squash(text: str) -> str:
    return _SQUASH.sub("", text).lower()


_BY_SQUASHED = {_squash(label): label for label in BY_LOWER.values()}


@dataclass(frozen=True)
class ParsedOutput:
    """What one findings reply says, and how much of it can be trusted."""

    reasoning: str
    answer: str | None
    labels: tuple[str, ...]
    near_misses: dict[str, str] = field(default_factory=dict)
    unknown: tuple[str, ...] = ()
    format_ok: bool = False
    refused: bool = False
    truncated: bool = False

    @property
    def status(self) -> str:
        """One word for the reader: ok, refused, truncated or unparseable."""
        if self.refused:
            return "refused"
        if self.truncated:
            return "truncated"
        if self.answer is None:
            return "unparseable"
        return "ok"


def parse_output(text: str, generated_tokens: int | None = None,
                 max_new_tokens: int | None = None) -> ParsedOutput:
    """Split reasoning and answer; extract labels exactly as training did, plus near misses."""
    think = _THINK.search(text)
    if think:
        reasoning = think.group(1).strip()
    else:
        # An unterminated <think> (truncation) still carries reasoning worth showing.
        start = text.find("<think>")
        reasoning = text[start + len("<think>"):].strip() if start >= 0 else ""
        end = reasoning.find("<answer>")
        if end >= 0:
            reasoning = reasoning[:end].strip()
    answer_match = _ANSWER.search(text)
    hit_limit = (
        generated_tokens is not None and max_new_tokens is not None
        and generated_tokens >= max_new_tokens
    )
    truncated = hit_limit or ("</answer>" not in text and "<answer>" in text) or (
        "<think>" in text and "</think>" not in text
    )
    if answer_match is None:
        refused = not truncated and bool(_REFUSAL.search(text))
        return ParsedOutput(reasoning, None, (), format_ok=False, refused=refused,
                            truncated=truncated)
    answer = answer_match.group(1).strip()
    labels: list[str] = []
    near: dict[str, str] = {}
    unknown: list[str] = []
    for raw in (p.strip() for p in answer.split(",")):
        if not raw:
            continue
        exact = BY_LOWER.get(raw.lower())
        close = _BY_SQUASHED.get(_squash(raw))
        if exact:
            label = exact
        elif close:
            label = close
            near[raw] = close
        else:
            unknown.append(raw)
            continue
        if label not in labels:
            labels.append(label)
    tags_once = all(text.count(t) == 1 for t in ("<think>", "</think>", "<answer>", "</answer>"))
    return ParsedOutput(
        reasoning=reasoning,
        answer=answer,
        labels=tuple(labels),
        near_misses=near,
        unknown=tuple(unknown),
        format_ok=bool(_FORMAT.match(text)) and tags_once,
        refused=False,
        truncated=truncated,
    )


SECTION_NAMES = ("INDICATION", "COMPARISON", "TECHNIQUE", "FINDINGS", "IMPRESSION")
_HEADING = re.compile(
    r"^\s*(?:#+\s*|\*\*)?(INDICATION|COMPARISON|TECHNIQUE|FINDINGS|IMPRESSION)S?"
    r"(?:\*\*)?\s*:?\s*(?:\*\*)?\s*",
    re.IGNORECASE | re.MULTILINE,
)


@dataclass(frozen=True)
class ReportSections:
    """A structured report split by heading; absent sections stay empty, nothing is invented."""

    indication: str = ""
    comparison: str = ""
    technique: str = ""
    findings: tuple[tuple[str, str], ...] = ()  # (region, text); region "" when not given
    impression: tuple[str, ...] = ()
    unsectioned: str = ""


def _strip_tags(text: str) -> str:
    answer = _ANSWER.search(text)
    body = answer.group(1) if answer else text
    return _THINK.sub("", body).replace("<answer>", "").replace("</answer>", "").strip()


def parse_report(text: str) -> ReportSections:
    """Split a structured-report reply into INDICATION ... IMPRESSION (tolerantly)."""
    body = _strip_tags(text)
    matches = list(_HEADING.finditer(body))
    chunks: dict[str, str] = {}
    unsectioned = body[: matches[0].start()].strip() if matches else body.strip()
    for i, m in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(body)
        name = m.group(1).upper()
        chunks[name] = (chunks.get(name, "") + "\n" + body[m.end():end]).strip()
    findings: list[tuple[str, str]] = []
    for line in chunks.get("FINDINGS", "").splitlines():
        line = line.strip().lstrip("-*• ").strip()
        if not line:
            continue
        region, sep, rest = line.partition(":")
        if sep and 0 < len(region) <= 40 and rest.strip():
            findings.append((region.strip(), rest.strip()))
        else:
            findings.append(("", line))
    impression = tuple(
        re.sub(r"^(\d+[.)]|[-*•])\s*", "", ln.strip()).strip()
        for ln in chunks.get("IMPRESSION", "").splitlines()
        if ln.strip()
    )
    return ReportSections(
        indication=chunks.get("INDICATION", ""),
        comparison=chunks.get("COMPARISON", ""),
        technique=chunks.get("TECHNIQUE", ""),
        findings=tuple(findings),
        impression=impression,
        unsectioned=unsectioned,
    )
