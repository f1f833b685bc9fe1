"""Parsing the model's output: the findings answer and the structured report.

Labels are exactly what the training reward's parser (``accuracy_reward``, the paper's
Φ) would count: the first ``<answer>...</answer>`` span split on commas, each item
stripped and lower-cased, intersected with the 14 CheXpert strings.  Anything else in
the answer is reported beside the labels and never becomes one: near misses
(``Pleural_Effusion``) as near misses, the rest as unknown items.  A statistic computed
from our labels is therefore the statistic the paper's protocol computes.

A result is ``ok`` only when the answer holds at least one label ("No Finding" is one).
Everything else says what happened instead (``refused``, ``truncated``, ``unparseable``,
``no_labels``), because "no labels" shown to a reader looks like "nothing found".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from models.labels import BY_LOWER, NO_FINDING

OK = "ok"
REFUSED = "refused"
TRUNCATED = "truncated"
UNPARSEABLE = "unparseable"
NO_LABELS = "no_labels"
ANSWER_STATUSES = (OK, REFUSED, TRUNCATED, UNPARSEABLE, NO_LABELS)

_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_THINK = re.compile(r"<think>(.*?)</think>", re.DOTALL)
_FORMAT = re.compile(r"^\s*<think>.*?</think>\s*<answer>.*?</answer>\s*$", re.DOTALL)
# The paper's trained fallback (section 2.3) and the refusal seen upstream (issue #2).
REFUSAL_PHRASES = (
    r"i'?m sorry,? i'?m specialized in medical chest x-?ray analysis",
    r"please provide (a|an) (frontal )?chest x-?ray", r"not a (frontal )?chest x-?ray",
    r"cannot (analy[sz]e|interpret) (this|the) image")
_REFUSAL = re.compile("|".join(REFUSAL_PHRASES), re.IGNORECASE)
_SQUASH = re.compile(r"[\s_\-]+")
_TAGS = ("<think>", "</think>", "<answer>", "</answer>")


def _squash(text: str) -> str:
    return _SQUASH.sub("", text).lower()


_BY_SQUASHED = {_squash(label): label for label in BY_LOWER.values()}


def near_miss(item: str) -> str | None:
    """The label an item almost is (case, spacing, underscores, a plural), or None."""
    squashed = _squash(item)
    return _BY_SQUASHED.get(squashed) or (
        _BY_SQUASHED.get(squashed[:-1]) if squashed.endswith("s") else None)


def is_refusal(text: str) -> bool:
    return bool(_REFUSAL.search(text.replace("\u2019", "'")))


def training_labels(answer: str) -> tuple[str, ...]:
    """The labels Φ counts in an answer span, in the order they appear, each once."""
    out: list[str] = []
    for item in answer.strip().split(","):
        label = BY_LOWER.get(item.strip().lower())
        if label is not None and label not in out:
            out.append(label)
    return tuple(out)


class Outcome:
    """``refused`` and ``truncated`` read off a ``status`` field: the one reading of a
    status shared by a parsed answer and a follow-up reply."""

    status: str

    @property
    def refused(self) -> bool:
        return self.status == REFUSED

    @property
    def truncated(self) -> bool:
        return self.status == TRUNCATED


@dataclass(frozen=True)
class ParsedOutput(Outcome):
    """What one findings reply says, and how much of it can be trusted."""

    status: str
    reasoning: str
    answer: str | None  # the first complete <answer> span, stripped; None when there is none
    labels: tuple[str, ...] = ()
    near_misses: dict[str, str] = field(default_factory=dict)
    unknown: tuple[str, ...] = ()
    format_ok: bool = False
    hit_token_limit: bool = False
    notes: tuple[str, ...] = ()


def _reasoning(text: str) -> str:
    think = _THINK.search(text)
    if think:
        return think.group(1).strip()
    start = text.find("<think>")  # unterminated: the reasoning still deserves showing
    if start < 0:
        return ""
    rest = text[start + len("<think>"):]
    end = rest.find("<answer>")
    return (rest[:end] if end >= 0 else rest).strip()


def parse_output(text: str, generated_tokens: int | None = None,
                 max_new_tokens: int | None = None) -> ParsedOutput:
    """Split reasoning and answer, extract labels as training did, and name the status."""
    reasoning = _reasoning(text)
    hit_limit = (generated_tokens is not None and max_new_tokens is not None
                 and generated_tokens >= max_new_tokens)
    match = _ANSWER.search(text)
    if match is None:
        cut_off = hit_limit or ("<think>" in text and "</think>" not in text) or \
            "<answer>" in text
        status = TRUNCATED if cut_off else REFUSED if is_refusal(text) else UNPARSEABLE
        return ParsedOutput(status, reasoning, None, hit_token_limit=hit_limit)
    answer = match.group(1).strip()
    labels = training_labels(answer)
    near: dict[str, str] = {}
    unknown: list[str] = []
    for raw in (p.strip() for p in answer.split(",")):
        if not raw or raw.lower() in BY_LOWER:
            continue
        close = near_miss(raw)
        if close is not None:
            near[raw] = close
        elif raw not in unknown:
            unknown.append(raw)
    notes = []
    if NO_FINDING in labels and len(labels) > 1:
        notes.append(f"The answer names {NO_FINDING!r} together with other labels; "
                     "both are kept as the training parser would.")
    status = OK if labels else REFUSED if is_refusal(text) else NO_LABELS
    if status == REFUSED:  # a refusal's words are the refusal, not answer items
        near, unknown = {}, []
    tags_once = all(text.count(t) == 1 for t in _TAGS)
    return ParsedOutput(
        status=status, reasoning=reasoning, answer=answer, labels=labels, near_misses=near,
        unknown=tuple(unknown), format_ok=bool(_FORMAT.match(text)) and tags_once,
        hit_token_limit=hit_limit, notes=tuple(notes),
    )


# -- the structured report ---------------------------------------------------------------

# The paper's template (section 2.5) plus the headings radiology reports commonly carry.
KNOWN_HEADINGS = {
    "EXAMINATION": "EXAMINATION", "EXAM": "EXAMINATION", "INDICATION": "INDICATION",
    "INDICATIONS": "INDICATION", "CLINICAL HISTORY": "INDICATION", "HISTORY": "INDICATION",
    "COMPARISON": "COMPARISON", "COMPARISONS": "COMPARISON", "TECHNIQUE": "TECHNIQUE",
    "FINDINGS": "FINDINGS", "FINDING": "FINDINGS", "IMPRESSION": "IMPRESSION",
    "IMPRESSIONS": "IMPRESSION", "RECOMMENDATION": "RECOMMENDATIONS",
    "RECOMMENDATIONS": "RECOMMENDATIONS",
}
# FINDINGS sub-headings of the paper's template (section 2.5), which it writes several to
# a line and breaks lines inside; then common variants of them.
TEMPLATE_REGIONS = ("Medical devices", "Central airways", "Lungs and pleural space",
                    "Mediastinum and hila", "Heart", "Upper abdomen and diaphragm",
                    "Bones and soft tissues")
FINDING_REGIONS = (*TEMPLATE_REGIONS, "Support devices", "Lungs and pleura", "Lungs",
                   "Pleura", "Cardiomediastinal silhouette")
_KNOWN = "|".join(sorted(KNOWN_HEADINGS, key=len, reverse=True))
# A heading is a known name with a colon, an ALL-CAPS name with a colon, or a markdown
# heading / bold name (known or ALL-CAPS), always at the start of a line.  A sentence
# that merely begins with "Impression" is not one: it has no colon.
_HEADING = re.compile(
    r"^[ \t]*(?:#{1,6}[ \t]*)?(?:\*\*)?[ \t]*"
    rf"(?P<name>(?i:{_KNOWN})|[A-Z][A-Z /&()-]{{1,38}}[A-Z)])"
    r"[ \t]*(?:\*\*[ \t]*:|:[ \t]*\*\*|:|\*\*(?=[ \t]*$)|(?<=[A-Za-z)])(?=[ \t]*$))",
    re.MULTILINE,
)
_MARKDOWN_LINE = re.compile(r"^[ \t]*(#{1,6}|\*\*)")
# Any markdown heading line ("## Follow-up") is a heading, whatever its case.
_MARKDOWN_HEADING = re.compile(r"^[ \t]*#{1,6}[ \t]+(?P<name>[^\n#:*]{1,60}?)[ \t]*:?[ \t]*$",
                               re.MULTILINE)
_BULLET = re.compile(r"^\s*(?:[-*\u2022\u25aa\u25cf]|\d{1,2}[.)])\s+")
_REGIONS = "|".join(sorted(FINDING_REGIONS, key=len, reverse=True))
# A FINDINGS sub-heading: a template region, or any other short capitalised name ("Soft
# tissues of the neck:"), with a colon, at the start of the text or after a sentence's
# end (".", ";", ":" or a line break), optionally in markdown bold.  Unknown names are
# at most six words, so a sentence with a colon in its middle stays one sentence.
_SUBHEADING = re.compile(
    r"(?:^|(?<=[.;:!?])[ \t]+|(?<=\n))[ \t]*(?:[-*\u2022][ \t]+)?(?:\*\*)?[ \t]*"
    rf"(?P<name>(?i:{_REGIONS})|[A-Z][a-z]+(?:[ \t]+[a-zA-Z][a-z]*){{0,5}})"
    r"[ \t]*(?:\*\*[ \t]*:|:[ \t]*\*\*|:)",
)


@dataclass(frozen=True)
class ReportSection:
    """One heading and its text, split into items (one per finding line or bullet).

    ``heading`` is the canonical name for a known heading, the heading as written for any
    other, and "" for text before the first heading.
    """

    heading: str
    items: tuple[str, ...]
    known: bool = True
    written: str = ""  # the heading as the model wrote it ("Findings", "FINDING")


@dataclass(frozen=True)
class ParsedReport:
    """The report reply, nothing dropped: reasoning, the body, and the body by heading."""

    reasoning: str
    body: str
    sections: tuple[ReportSection, ...]
    truncated: bool = False

    def section(self, heading: str) -> tuple[str, ...]:
        """All items under a heading (joined over repeats), for callers that want one."""
        return tuple(i for s in self.sections if s.heading == heading for i in s.items)


def _body(text: str) -> tuple[str, str]:
    """(reasoning, body): every think block out of the body, answer tags removed."""
    reasoning = _reasoning(text)
    body = _THINK.sub("", text)
    start = body.find("<think>")
    if start >= 0:  # unterminated think: the rest is reasoning, not report
        body = body[:start]
    body = body.replace("<answer>", "").replace("</answer>", "")
    return reasoning, body.strip()


def _items(heading: str, text: str) -> tuple[str, ...]:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if heading == "FINDINGS":
        return findings_items(text)
    if heading == "IMPRESSION":
        return tuple(s for s in (_BULLET.sub("", ln).strip() for ln in lines) if s)
    joined = "\n".join(lines)
    return (joined,) if joined else ()


def _flow(text: str) -> str:
    """Lines run together as the sentence they are (a finding broken across lines stays
    one); a bulleted line is its own clause, so it is joined with "; "."""
    out = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        bullet = bool(_BULLET.match(line))
        line = _BULLET.sub("", line).strip()
        if out:
            out += "; " if bullet and not out.endswith((".", ";", ":")) else " "
        out += line
    return out


def findings_items(text: str) -> tuple[str, ...]:
    """FINDINGS by the template's sub-headings: one item per sub-heading ("Heart: Enlarged
    heart."), however the model broke its lines; an unknown sub-heading is its own item,
    and text before the first sub-heading is one.  Findings with no sub-heading at all
    keep one item per line or bullet, as written."""
    marks = list(_SUBHEADING.finditer(text))
    if not marks:
        lines = (_BULLET.sub("", ln).strip() for ln in text.splitlines())
        return tuple(ln for ln in lines if ln)
    out: list[str] = []
    lead = _flow(text[: marks[0].start()])
    if lead:
        out.append(lead)
    for i, m in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        name = " ".join(m.group("name").split())  # as written: the text is the model's
        rest = _flow(text[m.end():end])
        out.append(f"{name}: {rest}" if rest else f"{name}:")
    return tuple(out)


def _is_heading(body: str, m: re.Match[str]) -> bool:
    """Known names may stand alone on their line; other ALL-CAPS names need a colon or a
    markdown marker, so that a lone capitalised word in the text stays text."""
    name = m.group("name")
    marked = ":" in m.group(0) or bool(_MARKDOWN_LINE.match(body, m.start()))
    return marked or name.upper() in KNOWN_HEADINGS


def parse_report(text: str, generated_tokens: int | None = None,
                 max_new_tokens: int | None = None) -> ParsedReport:
    """Split a structured-report reply by heading, keeping every sentence exactly once."""
    reasoning, body = _body(text)
    found = {m.start(): m for m in _MARKDOWN_HEADING.finditer(body)}
    for m in _HEADING.finditer(body):
        if _is_heading(body, m):
            found.setdefault(m.start(), m)
    matches = [found[k] for k in sorted(found)]
    sections: list[ReportSection] = []
    preamble = body[: matches[0].start()] if matches else body
    if preamble.strip():
        sections.append(ReportSection("", _items("", preamble), known=False))
    for i, m in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(body)
        written = m.group("name").strip()
        canonical = KNOWN_HEADINGS.get(written.upper())
        heading = canonical or written
        items = _items(heading, body[m.end():end])
        sections.append(ReportSection(heading, items, known=canonical is not None,
                                      written=written))
    hit_limit = (generated_tokens is not None and max_new_tokens is not None
                 and generated_tokens >= max_new_tokens)
    unterminated = "<think>" in text and "</think>" not in text
    return ParsedReport(reasoning, body, tuple(sections), truncated=hit_limit or unterminated)
