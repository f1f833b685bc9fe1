"""A rule's shape: the checks one ``[[rules]]`` table must pass to become a ``Rule``.

Every problem is kept, not the first, each with the line of its key where the caller
knows the lines (``dicom_gateway.routing.toml_lines``), so that one ``rules check`` shows
them all.  Pure, and no pydicom: the field check is the caller's
(``dicom_gateway.routing.building.build_rule_set`` is the one caller).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dicom_gateway.routing.conditions import FieldCheck, Node, RuleError, parse_condition
from dicom_gateway.routing.rules import (
    ACTIONS,
    DEFAULT_RULE,
    MAX_NAME_CHARS,
    PRIORITIES,
    Rule,
)

RULE_KEYS = ("name", "condition", "action", "priority", "destinations", "reason")


@dataclass(frozen=True)
class Problem:
    line: int  # 0: no line known
    message: str

    def render(self, path: str) -> str:
        where = f"{path}:{self.line}" if self.line else path
        return f"error: {where}: {self.message}"


def compile_rules(entries: Any, destination_sets: Iterable[str] = (),
                  lines: Sequence[Mapping[str, int]] = (), *,
                  check: FieldCheck) -> tuple[tuple[Rule, ...], list[Problem]]:
    """Validate the ``rules`` list (TOML tables); the valid rules and every problem found
    (``destination_sets``: the names a rule may send to; ``lines``: per entry, key ->
    line, "" -> the entry's header)."""
    if not isinstance(entries, list | tuple):
        return (), [Problem(0, "rules must be a list of tables ([[rules]])")]
    problems: list[Problem] = []
    rules: list[Rule] = []
    names: set[str] = set()
    sets = set(destination_sets)
    for n, entry in enumerate(entries):
        entry_check = _EntryCheck(n, lines[n] if n < len(lines) else {}, problems)
        rule = entry_check.rule(entry, sets, names, check)
        if rule is not None:
            rules.append(rule)
    return tuple(rules), problems


@dataclass
class _EntryCheck:
    """One ``[[rules]]`` table's checks, appending to ``problems`` with the key's line."""

    n: int
    where: Mapping[str, int]
    problems: list[Problem]
    label: str = ""

    def line(self, key: str = "") -> int:
        return self.where.get(key, self.where.get("", 0))

    def refuse(self, key: str, message: str) -> None:
        self.problems.append(Problem(self.line(key), f"{self.label}: {message}"))

    def rule(self, entry: Any, sets: set[str], names: set[str],
             check: FieldCheck) -> Rule | None:
        """The entry's rule, or None with its problems appended."""
        if not isinstance(entry, Mapping):
            self.problems.append(Problem(self.line(), f"rule {self.n + 1}: must be a table "
                                         "([[rules]])"))
            return None
        before = len(self.problems)
        self.label = f"rule {entry.get('name')!r}" if isinstance(entry.get("name"), str) \
            else f"rule {self.n + 1}"
        for key in entry:
            if key not in RULE_KEYS:
                close = difflib.get_close_matches(str(key), RULE_KEYS, n=1)
                self.refuse(key, f"unknown key {key!r}"
                            + (f" (did you mean {close[0]!r}?)" if close else ""))
        name = self.name(entry.get("name"), names)
        action, priority = entry.get("action"), entry.get("priority", "")
        if action not in ACTIONS:
            self.refuse("action", f"action must be process or skip (got {action!r})")
        if priority and priority not in PRIORITIES:
            self.refuse("priority", f"priority must be live or batch (got {priority!r})")
        dests = self.destination_set(entry.get("destinations", ""), sets)
        reason = self.reason(entry.get("reason", ""), action, bool(priority or dests))
        condition = entry.get("condition")
        tree = self.condition(condition, check)
        if len(self.problems) == before and tree is not None:
            return Rule(name, str(condition), tree, str(action), str(priority), dests,
                        reason, self.line())
        return None

    def name(self, name: Any, names: set[str]) -> str:
        """A rule's name, recorded on every job it decides: present, short, its own."""
        if not isinstance(name, str) or not name.strip():
            self.refuse("name", "needs a name")
            return ""
        if len(name) > MAX_NAME_CHARS:
            self.refuse("name", f"a name of at most {MAX_NAME_CHARS} characters")
        elif name == DEFAULT_RULE:
            self.refuse("name", f"the name {DEFAULT_RULE!r} is the built-in admission's")
        elif name in names:
            self.refuse("name", "the name is used twice")
        names.add(name)
        return name

    def destination_set(self, dests: Any, sets: set[str]) -> str:
        """The destination set a rule sends to: one the file defines ("" = the default)."""
        if not isinstance(dests, str):
            self.refuse("destinations", "destinations must be the name of a destination set")
            return ""
        if dests and dests not in sets:
            close = difflib.get_close_matches(dests, sorted(sets), n=1)
            known = ", ".join(sorted(sets)) or "none"
            hint = f"did you mean {close[0]!r}?" if close else f"known: {known}"
            self.refuse("destinations", f"unknown destination set {dests!r} ({hint})")
        return dests

    def reason(self, reason: Any, action: Any, routed: bool) -> str:
        """A skip rule's reason, recorded on what it skips; a skip routes nowhere."""
        if not isinstance(reason, str):
            self.refuse("reason", "reason must be a string")
            reason = ""
        if action == "skip":
            if not reason.strip():
                self.refuse("action", "a skip rule needs a reason")
            if routed:
                self.refuse("action", "a skip rule takes no priority or destinations")
        return reason.strip()

    def condition(self, condition: Any, check: FieldCheck) -> Node | None:
        if not isinstance(condition, str):
            self.refuse("condition", "needs a condition (a string; 'always' matches "
                        "everything)")
            return None
        try:
            return parse_condition(condition, check)
        except RuleError as exc:
            self.refuse("condition", f"condition: {exc}")
            return None
