"""Routing rules: which instances the model sees, at what priority, with results to where.

A site writes an ordered list of rules in its TOML settings file; for each instance the
first rule whose condition matches decides (``process`` at ``live`` or ``batch`` priority,
optionally to a named destination set, or ``skip`` with the rule's own reason).  An
instance no rule matches falls to the built-in default rule, today's admission.  The
built-in admission (``rejection_reason`` and the PA-over-AP choice) also still applies to
the instances a ``process`` rule matched: a rule widens nothing the model cannot read.

This module is the rule, the rule set and their evaluation.  A condition's grammar and
semantics are in ``dicom_gateway.routing.conditions``; a rule set is built and validated
by ``dicom_gateway.routing.building.build_rule_set``.

An evaluation explains itself per condition term by the field's keyword and whether it
held, never by the value: a rule on PatientAge does not put ages in logs.  Pure (no I/O
but what the caller passes in), and no pydicom.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from dicom_gateway.routing.conditions import Node, Outcome, Values
from dicom_gateway.routing.facts import Facts

ACTIONS = ("process", "skip")
PRIORITIES = ("live", "batch")
DEFAULT_RULE = "default"  # the built-in admission; no site rule may take the name
MAX_NAME_CHARS = 64  # rule and destination set names are recorded on each job


@dataclass(frozen=True)
class Rule:
    name: str
    condition: str
    tree: Node
    action: str  # process | skip
    priority: str = ""  # live | batch | "" (as without rules)
    destinations: str = ""  # a destination set's name; "" = the default set
    reason: str = ""
    line: int = 0

    @property
    def skip_reason(self) -> str:
        return f"skipped by rule {self.name!r}: {self.reason}"


@dataclass(frozen=True)
class TermResult:
    label: str  # the field's keyword and operator: never its value
    held: bool
    missing: bool = False  # the instance has no such value (saying so reveals none)
    timed_out: bool = False  # a ``matches`` search ran out of time: false

    def render(self) -> str:
        return f"{self.label}: {'true' if self.held else 'false'}" + (
            " (missing)" if self.missing and self.label.split()[1:] != ["missing"] else "") \
            + (" (timed out)" if self.timed_out else "")


@dataclass(frozen=True)
class Evaluation:
    rule: str
    matched: bool
    terms: tuple[TermResult, ...]

    @property
    def timed_out(self) -> tuple[str, ...]:
        """The labels of the terms whose search ran out of time."""
        return tuple(t.label for t in self.terms if t.timed_out)

    def explain(self) -> str:
        parts = ", ".join(t.render() for t in self.terms)
        return f"rule {self.rule!r} {'matched' if self.matched else 'did not match'}" + (
            f" ({parts})" if parts else "")


@dataclass(frozen=True)
class Decision:
    """The first matching rule's verdict for one instance (``rule`` = "default" when no
    site rule matched: the built-in admission decides)."""

    rule: str
    action: str  # process | skip
    priority: str = ""
    destinations: str = ""
    reason: str = ""
    evaluations: tuple[Evaluation, ...] = ()

    @property
    def is_default(self) -> bool:
        return self.rule == DEFAULT_RULE


def evaluate(rule: Rule, facts: Facts) -> Evaluation:
    seen: dict[str, Values] = {}

    def lookup(name: str) -> Values:
        if name not in seen:
            seen[name] = facts.values(name)
        return seen[name]

    outcomes: list[Outcome] = []
    matched = rule.tree.evaluate(lookup, outcomes)  # each term once
    terms = tuple(TermResult(o.term.label, o.held, o.missing, o.timed_out) for o in outcomes)
    return Evaluation(rule.name, matched, terms)


@dataclass(frozen=True)
class RuleSet:
    """An ordered, validated list of rules and the destination sets they may name."""

    rules: tuple[Rule, ...] = ()
    destination_sets: Mapping[str, str] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.rules)

    def decide(self, facts: Facts) -> Decision:
        """First match wins; rules after it are not tried (nor explained)."""
        tried: list[Evaluation] = []
        for rule in self.rules:
            ev = evaluate(rule, facts)
            tried.append(ev)
            if ev.matched:
                return Decision(rule.name, rule.action, rule.priority, rule.destinations,
                                rule.reason, tuple(tried))
        return Decision(DEFAULT_RULE, "process", evaluations=tuple(tried))
