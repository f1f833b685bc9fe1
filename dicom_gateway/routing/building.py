"""The one builder of a rule set: a site's ``rules`` and ``[destination_sets]`` (as the
TOML file or the environment gives them) validated into a ``RuleSet``, with every problem.

Its callers: the settings, which check a rule's shape when they load (``any_field``: no
DICOM library); ``worker.ingest.routing.rules_of``, where rules are used; and
``dicom_gateway.routing.rules_file.check_text``, for ``rules check`` and live reloads
(both with ``dicom_gateway.routing.fields.check_field``).  Pure, and no pydicom: the
field check is the one thing a caller chooses, because the settings must not load
pydicom's dictionary.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dicom_gateway.routing.conditions import FieldCheck
from dicom_gateway.routing.destination_sets import parse_destination_sets
from dicom_gateway.routing.rule_checks import Problem, compile_rules
from dicom_gateway.routing.rules import RuleSet
from dicom_gateway.routing.toml_lines import RuleLines


def build_rule_set(rules: Any, destination_sets: Any = None, lines: RuleLines | None = None,
                   *, check: FieldCheck) -> tuple[RuleSet, list[Problem]]:
    """The rule set of the valid rules and sets, and every problem, by line where
    ``lines`` (from the file's text) says (``check``: the field check of conditions)."""
    sets, bad = parse_destination_sets({} if destination_sets is None else destination_sets)
    problems = [Problem(lines.of_set(name) if lines else 0, message) for name, message in bad]
    names = [*sets, *(name for name, _ in bad)]  # a bad set is reported once, not per rule
    compiled, rule_problems = compile_rules(rules, names, lines.entries if lines else (),
                                            check=check)
    if lines is not None and not lines.entries:  # an inline array: the line of ``rules =``
        top = lines.of_top("rules")
        rule_problems = [Problem(p.line or top, p.message) for p in rule_problems]
    problems += rule_problems
    problems.sort(key=lambda p: p.line)
    return RuleSet(compiled, sets), problems


def refusal(problems: Sequence[Problem]) -> str:
    """One line for a settings error: every problem, without lines (the file's text is
    not at hand where settings are loaded)."""
    return ("routing rules: " + "; ".join(p.message for p in problems)
            + " ('cxr-gateway rules check' gives each its line)")
