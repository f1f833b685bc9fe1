"""One study routed: the site's rules per instance (first match wins), then the built-in
admission over the instances no ``skip`` rule took.

Shared by the assembler (which records the result) and ``cxr-gateway rules test``
(which only prints it), so that what the tester says is what the gateway does.  Apart
from ``dicom_gateway.routing.rules`` because the built-in admission reads files with
pydicom, and the settings import the rules (through ``building``) to check a rule's shape.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dicom_gateway.routing.admission import admit
from dicom_gateway.routing.facts import Facts
from dicom_gateway.routing.rules import DEFAULT_RULE, Decision, RuleSet


@dataclass(frozen=True)
class RoutedStudy:
    """What the rules and the built-in admission decided for one study's instances."""

    admitted: str | None
    skipped: dict[str, str]  # SOP Instance UID -> reason
    decisions: dict[str, Decision]  # SOP Instance UID -> the rule that decided it
    rule: str  # the rule that decided the study (its admitted instance's, or the skips')
    priority: str = ""  # live | batch | "" (the site's default)
    destinations: str = ""  # destination set; "" = the default set
    outcome: str = ""  # the study's recorded outcome ("admitted ..." or why not)

    @property
    def timed_out(self) -> dict[str, tuple[str, ...]]:
        """rule name -> the terms whose search ran out of time (false), over all instances."""
        out: dict[str, tuple[str, ...]] = {}
        for d in self.decisions.values():
            for ev in d.evaluations:
                if ev.timed_out:
                    out[ev.rule] = tuple(dict.fromkeys((*out.get(ev.rule, ()), *ev.timed_out)))
        return out


def route_study(rules: RuleSet, instances: Sequence[tuple[Any, Facts]],
                unreadable: Mapping[str, str] | None = None) -> RoutedStudy:
    """Rules first (per instance, first match wins); then the built-in admission over the
    instances no ``skip`` rule took: its rejection reasons and its PA-over-AP choice.

    ``instances`` pairs each ``admission.Candidate`` with its Facts.  With no rules this
    is ``admission.admit`` exactly, outcome text included; ``unreadable`` (UID -> reason)
    are instances whose header could not be read, skipped like the built-in's rejections."""
    decisions: dict[str, Decision] = {}
    rule_skips: dict[str, str] = {}
    open_: list[Any] = []
    by_rule = {r.name: r for r in rules.rules}
    for cand, facts in instances:
        d = rules.decide(facts)
        decisions[cand.sop_instance_uid] = d
        if d.action == "skip":
            rule_skips[cand.sop_instance_uid] = by_rule[d.rule].skip_reason
        else:
            open_.append(cand)
    builtin = admit(open_)
    others = {**builtin.skipped, **(unreadable or {})}
    skipped = {**rule_skips, **others}
    if builtin.admitted is not None:
        d = decisions[builtin.admitted]
        outcome = f"admitted {builtin.admitted}" + (
            "" if d.is_default else f" by rule {d.rule!r}")
        return RoutedStudy(builtin.admitted, skipped, decisions, d.rule, d.priority,
                           d.destinations, outcome)
    deciders = [decisions[u].rule for u in skipped if u in decisions]
    rule = ", ".join(dict.fromkeys(deciders)) or DEFAULT_RULE
    if others or not rule_skips:
        reasons = sorted(set(skipped.values()))
        outcome = "no frontal chest radiograph: " + "; ".join(reasons)
    else:
        outcome = "; ".join(sorted(set(rule_skips.values())))
    return RoutedStudy(None, skipped, decisions, rule, outcome=outcome)
