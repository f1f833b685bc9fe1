"""Routing rules: which instances the model sees, at what priority, with results to where.

A site writes an ordered list of rules in its TOML settings file; for each instance the
first rule whose condition matches decides (``process`` at ``live`` or ``batch`` priority,
optionally to a named destination set, or ``skip`` with the rule's own reason).  An
instance no rule matches falls to the built-in default rule, today's admission.  The
built-in admission (``rejection_reason`` and the PA-over-AP choice) also still applies to
the instances a ``process`` rule matched: a rule widens nothing the model cannot read.

Conditions are parsed here by a small tokenizer and recursive-descent parser (never
Python ``eval``) into a tree that is evaluated against one instance's tags::

    condition := or
    or        := and ("or" and)*
    and       := unary ("and" unary)*
    unary     := "not" unary | "(" or ")" | "always" | term
    term      := FIELD ("==" | "!=" | "<" | "<=" | ">" | ">=") literal
               | FIELD ["not"] "in" "[" literal ("," literal)* "]"
               | FIELD "matches" STRING        (re.search: anchor with ^ and $)
               | FIELD ("exists" | "missing")

FIELD is a DICOM keyword from pydicom's dictionary (a typo is refused with the closest
keyword) or a virtual field: ``PatientAgeYears`` (from PatientAge, else PatientBirthDate
and StudyDate), ``CallingAE``, ``CalledAE``.  Semantics, chosen so a rule never matches
by accident:

* a tag that is absent or empty is *missing*: every comparison with it is false (``!=``
  and ``not in`` too) and nothing raises; ``missing`` / ``exists`` test for it;
* a multi-valued tag (ImageType) compares by membership: ``==`` / ``in`` / ``matches``
  hold when any value does, ``!=`` / ``not in`` when no value does;
* strings compare ignoring case and surrounding spaces; ``matches`` uses the regular
  expression as written (``(?i)`` for case-insensitive);
* ``<``, ``<=``, ``>``, ``>=`` are numeric (the literal must be a number; a value that is
  not a number compares false); ``==`` with a number literal compares numerically.

An evaluation explains itself per condition term by the field's keyword and whether it
held, never by the value: a rule on PatientAge does not put ages in logs.  This module is
pure (no I/O but what the caller passes in) and imports no pydicom: the field check is
passed in (``dicom_gateway.routing.fields``), so the settings can check a rule's shape
without loading a DICOM library.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dicom_gateway.routing.conditions import (
    Node,
    RuleError,
    Term,
    Token,
    Values,
    any_field,
    parse_condition,
    tokenize,
)
from dicom_gateway.routing.facts import VIRTUAL_FIELDS, Facts, age_years
from dicom_gateway.transfer.destinations import parse_destinations

__all__ = [  # the parser and the facts are re-exported: one import for a rule's user
    "ACTIONS", "DEFAULT_RULE", "PRIORITIES", "VIRTUAL_FIELDS", "Decision", "Evaluation",
    "Facts", "Node", "Problem", "Rule", "RuleError", "RuleSet", "RulesInvalid", "Term",
    "TermResult", "Token", "Values", "age_years", "any_field", "check_text", "compile_rules",
    "entry_lines", "evaluate", "parse_condition", "parse_destination_sets", "tokenize",
]

ACTIONS = ("process", "skip")
PRIORITIES = ("live", "batch")
RULE_KEYS = ("name", "condition", "action", "priority", "destinations", "reason")
DEFAULT_RULE = "default"  # the built-in admission; no site rule may take the name
MAX_NAME_CHARS = 64  # rule and destination set names are recorded on each job

# -- rules ------------------------------------------------------------------------------

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

    def render(self) -> str:
        return f"{self.label}: {'true' if self.held else 'false'}" + (
            " (missing)" if self.missing and self.label.split()[1:] != ["missing"] else "")


@dataclass(frozen=True)
class Evaluation:
    rule: str
    matched: bool
    terms: tuple[TermResult, ...]

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

    matched = rule.tree.evaluate(lookup)
    terms = tuple(TermResult(t.label, t.holds(lookup(t.field)), lookup(t.field) is None)
                  for t in rule.tree.terms())
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


# -- validation -------------------------------------------------------------------------

@dataclass(frozen=True)
class Problem:
    line: int  # 0: no line known
    message: str

    def render(self, path: str) -> str:
        where = f"{path}:{self.line}" if self.line else path
        return f"error: {where}: {self.message}"


class RulesInvalid(ValueError):
    """Every problem found in a rules file, each with its line."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(
            (f"line {p.line}: " if p.line else "") + p.message for p in self.problems))


def compile_rules(entries: Any, destination_sets: Iterable[str] = (),
                  lines: Sequence[Mapping[str, int]] = (), *,
                  check: Callable[[str], None]) -> tuple[RuleSet, list[Problem]]:
    """Validate the ``rules`` list (TOML tables); the rule set of the valid rules and
    every problem found (``lines``: per entry, key -> line, "" -> the entry's header)."""
    problems: list[Problem] = []
    rules: list[Rule] = []
    if not isinstance(entries, list | tuple):
        return RuleSet(), [Problem(0, "rules must be a list of tables ([[rules]])")]
    names: set[str] = set()
    for n, entry in enumerate(entries):
        where = lines[n] if n < len(lines) else {}
        rule = _compile_entry(n, entry, where, set(destination_sets), names, problems, check)
        if rule is not None:
            rules.append(rule)
    return RuleSet(tuple(rules)), problems


def _compile_entry(n: int, entry: Any, where: Mapping[str, int], sets: set[str],
                   names: set[str], problems: list[Problem],
                   check: Callable[[str], None]) -> Rule | None:
    """One ``[[rules]]`` table: its rule, or None with its problems appended (every one,
    not the first, so that one ``rules check`` shows them all)."""
    def line(key: str = "", _where: Mapping[str, int] = where) -> int:
        return _where.get(key, _where.get("", 0))

    if not isinstance(entry, Mapping):
        problems.append(Problem(line(), f"rule {n + 1}: must be a table ([[rules]])"))
        return None
    before = len(problems)
    label = f"rule {entry.get('name')!r}" if isinstance(entry.get("name"), str) \
        else f"rule {n + 1}"
    for key in entry:
        if key not in RULE_KEYS:
            close = difflib.get_close_matches(str(key), RULE_KEYS, n=1)
            problems.append(Problem(line(key), f"{label}: unknown key {key!r}"
                                    + (f" (did you mean {close[0]!r}?)" if close else "")))
    name = _checked_name(entry.get("name"), label, line("name"), names, problems)
    action = entry.get("action")
    if action not in ACTIONS:
        problems.append(Problem(line("action"), f"{label}: action must be process or "
                                f"skip (got {action!r})"))
    priority = entry.get("priority", "")
    if priority and priority not in PRIORITIES:
        problems.append(Problem(line("priority"), f"{label}: priority must be live or "
                                f"batch (got {priority!r})"))
    dests = _checked_set(entry.get("destinations", ""), label, line("destinations"), sets,
                         problems)
    reason = entry.get("reason", "")
    if not isinstance(reason, str):
        problems.append(Problem(line("reason"), f"{label}: reason must be a string"))
        reason = ""
    if action == "skip":
        if not reason.strip():
            problems.append(Problem(line("action"), f"{label}: a skip rule needs a reason"))
        if priority or dests:
            problems.append(Problem(line("action"), f"{label}: a skip rule takes no "
                                    "priority or destinations"))
    condition = entry.get("condition")
    tree: Node | None = None
    if not isinstance(condition, str):
        problems.append(Problem(line("condition"), f"{label}: needs a condition (a "
                                "string; 'always' matches everything)"))
    else:
        try:
            tree = parse_condition(condition, check)
        except RuleError as exc:
            problems.append(Problem(line("condition"), f"{label}: condition: {exc}"))
    if len(problems) == before and tree is not None:
        return Rule(str(name), str(condition), tree, str(action), str(priority), dests,
                    reason.strip(), line())
    return None


def _checked_set(dests: Any, label: str, line: int, sets: set[str],
                 problems: list[Problem]) -> str:
    """The destination set a rule sends to: one the file defines ("" = the default)."""
    if not isinstance(dests, str):
        problems.append(Problem(line, f"{label}: destinations must be the name of a "
                                "destination set"))
        return ""
    if dests and dests not in sets:
        close = difflib.get_close_matches(dests, sorted(sets), n=1)
        known = ", ".join(sorted(sets)) or "none"
        hint = f"did you mean {close[0]!r}?" if close else f"known: {known}"
        problems.append(Problem(line, f"{label}: unknown destination set {dests!r} "
                                f"({hint})"))
    return dests


def _checked_name(name: Any, label: str, line: int, names: set[str],
                  problems: list[Problem]) -> str:
    """A rule's name, recorded on every job it decides: present, short, its own."""
    if not isinstance(name, str) or not name.strip():
        problems.append(Problem(line, f"{label}: needs a name"))
        return ""
    if len(name) > MAX_NAME_CHARS:
        problems.append(Problem(line, f"{label}: a name of at most {MAX_NAME_CHARS} "
                                "characters"))
    elif name == DEFAULT_RULE:
        problems.append(Problem(line, f"{label}: the name {DEFAULT_RULE!r} is the built-in "
                                "admission's"))
    elif name in names:
        problems.append(Problem(line, f"{label}: the name is used twice"))
    names.add(name)
    return name


_HEADER = re.compile(r"^\s*\[\[\s*rules\s*\]\]\s*(#.*)?$")
_TABLE = re.compile(r"^\s*\[")
_KEY = re.compile(r"^\s*([A-Za-z0-9_-]+|\"[^\"]*\")\s*=")


def entry_lines(text: str) -> tuple[list[dict[str, int]], dict[str, int]]:
    """Line numbers a TOML parser does not give: per ``[[rules]]`` entry its header ("")
    and each key; and each key of ``[destination_sets]`` plus top-level keys."""
    entries: list[dict[str, int]] = []
    sets: dict[str, int] = {}
    section: str | None = ""  # "" top level, "rules", "destination_sets", None: other
    for number, raw in enumerate(text.splitlines(), 1):
        if _HEADER.match(raw):
            entries.append({"": number})
            section = "rules"
            continue
        if _TABLE.match(raw):
            inner = raw.strip().strip("[]").strip()
            section = "destination_sets" if inner == "destination_sets" else None
            if section:
                sets.setdefault("", number)
            continue
        key = _KEY.match(raw)
        if not key:
            continue
        name = key.group(1).strip('"')
        if section == "rules" and entries:
            entries[-1].setdefault(name, number)
        elif section == "destination_sets":
            sets.setdefault(name, number)
        elif section == "":
            sets.setdefault(f"top:{name}", number)
    return entries, sets


def parse_destination_sets(value: Any) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """``name -> "AE@host:port,..."`` checked with parse_destinations: the valid sets
    (canonical text) and (name, problem) for the others."""
    good: dict[str, str] = {}
    bad: list[tuple[str, str]] = []
    if not isinstance(value, Mapping):
        return good, [("", "destination_sets must be a table of name = \"AE@host:port,...\"")]
    for name, text in value.items():
        if isinstance(text, list | tuple) and all(isinstance(t, str) for t in text):
            text = ",".join(text)
        if len(str(name)) > MAX_NAME_CHARS:
            bad.append((str(name), f"destination set name longer than {MAX_NAME_CHARS} "
                                   "characters"))
            continue
        if not isinstance(text, str):
            bad.append((str(name), f"destination set {name!r}: must be a comma list string"))
            continue
        try:
            dests = parse_destinations(text)
        except ValueError as exc:
            bad.append((str(name), f"destination set {name!r}: {exc}"))
            continue
        if not dests:
            bad.append((str(name), f"destination set {name!r} is empty"))
            continue
        good[str(name)] = ",".join(str(d) for d in dests)
    return good, bad


def check_text(text: str, check: Callable[[str], None]) -> tuple[RuleSet, list[Problem]]:
    """A settings file's rules and destination sets, validated, with every problem's line.

    Other settings in the file are not looked at here (``load_settings`` does that)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"line (\d+)", str(exc))
        return RuleSet(), [Problem(int(m.group(1)) if m else 0, f"not TOML: {exc}")]
    entries, set_lines = entry_lines(text)
    problems: list[Problem] = []
    sets, bad = parse_destination_sets(data.get("destination_sets", {}))
    for name, message in bad:
        problems.append(Problem(set_lines.get(name, set_lines.get("", 0)), message))
    bad_names = [name for name, _ in bad]
    rules, rule_problems = compile_rules(data.get("rules", []), [*sets, *bad_names], entries,
                                         check=check)
    if "rules" in data and not entries:  # an inline array: the line of ``rules =``
        line = set_lines.get("top:rules", 0)
        rule_problems = [Problem(p.line or line, p.message) for p in rule_problems]
    problems += rule_problems
    problems.sort(key=lambda p: p.line)
    return RuleSet(rules.rules, sets), problems

