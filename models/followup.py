"""Follow-up questions on a study already read: routing, the request, the reply.

Pure functions only (no I/O, no database): the worker stores the conversation and calls
these to decide what the model is asked and how its reply is read.

Routing follows NVIDIA's wrapper ("Prompt Routing" and "Follow-up Handling" in its
skill): an exact model prompt ("call the model with this prompt exactly: ...") is sent
as given; a request for a report ("write a structured report", "generate a radiology
report", "report please") reuses the report turn when the conversation holds one and
otherwise asks the model's trained report prompt after the stored turns; any other
question about the image is sent verbatim after the stored turns and its answer shown
prefixed exactly ``Answer:``, since it is answered from the findings context; an
off-topic question (nothing about the image, the chest or a finding) is also sent
verbatim, unprefixed: the model was trained to refuse those itself (paper, section 2.3),
and its own refusal is what the reviewer sees, never one of ours.

The new question is always one more user turn after every stored turn (the image in
the first user turn only, every earlier reply verbatim), the same chat-message form as
the report turn, so no earlier turn is ever generated again.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from models.backend import Generation, ModelRequest, Turn
from models.labels import CHEXPERT_LABELS
from models.parsing import REFUSED, TRUNCATED, Outcome, is_refusal, parse_output, parse_report
from models.prompts import REPORT_MAX_NEW_TOKENS, REPORT_PROMPT

FOLLOWUP_MAX_NEW_TOKENS = 2048
ANSWER_PREFIX = "Answer:"

# routes
REPORT = "report"  # a report request: reuse the report turn, or ask the report prompt
ANSWER = "answer"  # a question about the image: answered from the context, "Answer:" first
OFF_TOPIC = "off_topic"  # nothing about the image: sent as asked, the model refuses itself
EXACT = "exact"  # "call the model with this prompt exactly: ...": that prompt alone
ROUTES = (REPORT, ANSWER, OFF_TOPIC, EXACT)

# reply statuses (a follow-up's answer is free text, not a label list)
ANSWERED = "answered"
CUT_OFF = TRUNCATED
MOCK = "mock"

_EXACT = re.compile(
    r"^\s*(?:please\s+)?(?:call|ask|prompt|send|run)\s+(?:the\s+)?model\s+(?:with\s+)?"
    r"(?:this|the\s+following)\s+prompt\s+exactly\s*:\s*(?P<prompt>.+?)\s*$",
    re.IGNORECASE | re.DOTALL)
_REPORT_NOUN = r"(?:(?:structured|radiology|radiological|chest\s*x-?ray|cxr|full|formal)\s+)*" \
               r"report"
_REPORT = re.compile(
    r"^\s*(?:(?:can|could|would|will)\s+you\s+|please\s+|now\s+|and\s+)*"
    r"(?:write|create|generate|draft|produce|prepare|make|give(?:\s+me)?|compose|"
    rf"provide|dictate)\s+(?:me\s+)?(?:a|an|the|my)?\s*{_REPORT_NOUN}\b"
    r"|^\s*(?:a\s+|the\s+)?" + _REPORT_NOUN + r"(?:\s+please)?\s*[.!?]*\s*$"
    r"|\bstructured\s+report\b",
    re.IGNORECASE)
# Words that make a question about this image (anatomy, findings, devices, the reading);
# a question with none of them is off-topic ("What is the capital of France?").
_TOPIC_WORDS = (
    r"x-?rays?|cxr|radiograph\w*|images?|film|study|scan|views?|chest|thora\w*|lungs?|"
    r"pulmonar\w*|heart|cardi\w*|pleura\w*|effusions?|lesions?|nodules?|mass(?:es)?|"
    r"opacit\w*|find\w*|abnormal\w*|normal|diagnos\w*|differential|impression|devices?|"
    r"tubes?|lines?|catheters?|pacemaker|wires?|leads?|ports?|clips?|lobes?|zones?|"
    r"bases?|basilar|apex|apical|hil\w*|mediastin\w*|diaphragm\w*|costophrenic|ribs?|"
    r"bones?|fractures?|spine|clavicle|trachea|airways?|bronch\w*|edema|oedema|"
    r"atelecta\w*|consolidat\w*|pneumo\w*|infiltrat\w*|collapse|emphysema|fibrosis|"
    r"silhouette|reasoning|report|labels?|answer|signs?|severity|severe|mild|moderate|"
    r"left|right|bilateral|side|where|located|location|size|how\s+(?:big|large|many)|"
    r"see|seen|visible|show|shows|why|explain|confiden\w*|certain\w*|sure|"
    r"follow[- ]?up|recommend\w*|compar\w*|prior|change|patient")
_ON_TOPIC = re.compile(rf"\b(?:{_TOPIC_WORDS})\b|"
                       + "|".join(re.escape(label.lower()) for label in CHEXPERT_LABELS),
                       re.IGNORECASE)


@dataclass(frozen=True)
class Route:
    """What the model is asked for a question, and how the reply is shown."""

    route: str
    prompt: str  # the user turn sent ("" when an existing report turn is reused)
    reuse_report: bool = False
    max_new_tokens: int = FOLLOWUP_MAX_NEW_TOKENS


def is_report_request(question: str) -> bool:
    """"write a structured report" and its close variants (the wrapper's report mode)."""
    return bool(_REPORT.search(question))


def is_off_topic(question: str) -> bool:
    """Nothing in the question is about the image, the chest or a finding."""
    return not _ON_TOPIC.search(question)


def route(question: str, has_report_turn: bool) -> Route:
    """The wrapper's routing order: an exact prompt first, then a report request, then a
    question about the image, else off-topic.  Raises ValueError for an empty question."""
    text = question.strip()
    if not text:
        raise ValueError("the question is empty")
    exact = _EXACT.match(text)
    if exact:
        return Route(EXACT, exact.group("prompt"))
    if is_report_request(text):
        if has_report_turn:
            return Route(REPORT, "", reuse_report=True)
        return Route(REPORT, REPORT_PROMPT, max_new_tokens=REPORT_MAX_NEW_TOKENS)
    if is_off_topic(text):
        return Route(OFF_TOPIC, text)
    return Route(ANSWER, text)


def followup_request(image_png: bytes, stored: Sequence[Turn], prompt: str,
                     max_new_tokens: int = FOLLOWUP_MAX_NEW_TOKENS) -> ModelRequest:
    """The stored conversation (first turn user, turns alternating, last an assistant
    reply) plus the new question as the last user turn; the image once, with the first."""
    if not stored or stored[0].role != "user" or stored[-1].role != "assistant":
        raise ValueError("a follow-up needs a stored conversation that ends with a reply")
    for before, after in zip(stored, stored[1:], strict=False):
        if before.role == after.role:
            raise ValueError("stored turns must alternate user and assistant")
    if not prompt.strip():
        raise ValueError("the follow-up prompt is empty")
    return ModelRequest(image_png, (*stored, Turn("user", prompt)), max_new_tokens)


@dataclass(frozen=True)
class FollowupReply(Outcome):
    """A follow-up reply read like every turn: reasoning, answer, refusal, truncation."""

    text: str  # the reply verbatim, reasoning and tags included
    reasoning: str
    answer: str  # what the reviewer is shown (``Answer:`` first on the answer route)
    status: str  # answered | refused | truncated | mock
    generated_tokens: int | None = None


def read_reply(text: str, route_name: str, generated_tokens: int | None = None,
               max_new_tokens: int | None = None, is_mock: bool = False) -> FollowupReply:
    """Read a reply: the ``<answer>`` span when there is one, else the text outside the
    reasoning (a follow-up may answer in prose); refused when it is the model's refusal;
    truncated when it hit the token limit or stopped inside a tag."""
    parsed = parse_output(text, generated_tokens, max_new_tokens)
    body = parse_report(text, generated_tokens, max_new_tokens)
    answer = parsed.answer if parsed.answer is not None else body.body
    cut_off = parsed.status == TRUNCATED or parsed.hit_token_limit or body.truncated
    if is_mock:
        status = MOCK
    elif cut_off:
        status = CUT_OFF
    elif is_refusal(answer) or (parsed.answer is None and is_refusal(text)):
        status = REFUSED
    else:
        status = ANSWERED
    shown = answer.strip()
    if route_name == ANSWER and status != REFUSED and not shown.startswith(ANSWER_PREFIX):
        shown = f"{ANSWER_PREFIX} {shown}".rstrip()
    return FollowupReply(text, parsed.reasoning or body.reasoning, shown, status,
                         generated_tokens)


def reply_of(generation: Generation, chosen: Route, is_mock: bool) -> FollowupReply:
    """The reply a backend generation gives for a routed question."""
    return read_reply(generation.text, chosen.route, generation.generated_tokens,
                      chosen.max_new_tokens, is_mock)
