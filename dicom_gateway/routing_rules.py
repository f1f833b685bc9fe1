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
passed in (``dicom_gateway.routing_fields``), so the settings can check a rule's shape
without loading a DICOM library.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from dicom_gateway.destinations import parse_destinations

VIRTUAL_FIELDS = ("PatientAgeYears", "CallingAE", "CalledAE")
ACTIONS = ("process", "skip")
PRIORITIES = ("live", "batch")
RULE_KEYS = ("name", "condition", "action", "priority", "destinations", "reason")
DEFAULT_RULE = "default"  # the built-in admission; no site rule may take the name
MAX_CONDITION_CHARS = 4000
MAX_NAME_CHARS = 64  # rule and destination set names are recorded on each job
MAX_DEPTH = 40
_COMPARISONS = ("==", "!=", "<=", ">=", "<", ">")
_WORDS = {"and", "or", "not", "in", "matches", "exists", "missing", "always"}


class RuleError(ValueError):
    """A condition or rule that cannot be used; the message says what and where."""


# -- tokens ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Token:
    kind: str  # word | field | string | number | op | ( ) [ ] , | end
    text: str
    col: int
    value: str | float = ""


_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def tokenize(text: str) -> list[Token]:
    """Split a condition into tokens; RuleError names the first character it cannot use."""
    if len(text) > MAX_CONDITION_CHARS:
        raise RuleError(f"condition longer than {MAX_CONDITION_CHARS} characters")
    out: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
            continue
        col = i + 1
        if c in "()[],":
            out.append(Token(c, c, col))
            i += 1
        elif text.startswith(_COMPARISONS, i):
            op = next(o for o in _COMPARISONS if text.startswith(o, i))
            out.append(Token("op", op, col))
            i += len(op)
        elif c in "\"'":
            value, i = _string(text, i)
            out.append(Token("string", text[col - 1:i], col, value))
        elif (m := _NUMBER.match(text, i)) is not None:
            out.append(Token("number", m.group(), col, float(m.group())))
            i = m.end()
        elif (m := _IDENT.match(text, i)) is not None:
            word = m.group()
            kind = "word" if word.lower() in _WORDS else "field"
            out.append(Token(kind, word.lower() if kind == "word" else word, col))
            i = m.end()
        else:
            raise RuleError(f"unexpected character {c!r} at column {col}")
    out.append(Token("end", "", n + 1))
    return out


def _string(text: str, start: int) -> tuple[str, int]:
    """A quoted literal: a backslash escapes the quote or a backslash; any other backslash
    is kept, so a regular expression's ``\\d`` is written as it is."""
    quote, i, chars = text[start], start + 1, []
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text) and text[i + 1] in (quote, "\\"):
            chars.append(text[i + 1])
            i += 2
        elif c == quote:
            return "".join(chars), i + 1
        else:
            chars.append(c)
            i += 1
    raise RuleError(f"unterminated string starting at column {start + 1}")


# -- the condition tree ---------------------------------------------------------------

Values = tuple[str, ...] | None  # None: the field is missing


@dataclass(frozen=True)
class Term:
    """One test of one field: what the explanation names (keyword and operator only)."""

    field: str
    op: str  # == != < <= > >= in "not in" matches exists missing
    literals: tuple[str | float, ...] = ()
    pattern: re.Pattern[str] | None = None

    @property
    def label(self) -> str:
        """The keyword and operator: the operator's own literals are left out too."""
        if self.op in ("exists", "missing"):
            return f"{self.field} {self.op}"
        return f"{self.field} {self.op} [...]" if "in" in self.op.split() else \
            f"{self.field} {self.op} ..."

    def holds(self, values: Values) -> bool:
        if self.op == "missing":
            return values is None
        if values is None:
            return False  # every comparison with a missing field is false, never raises
        if self.op == "exists":
            return True
        if self.op == "matches":
            assert self.pattern is not None
            return any(self.pattern.search(v) for v in values)
        if self.op in ("!=", "not in"):
            return not any(_equal(v, lit) for v in values for lit in self.literals)
        if self.op in ("==", "in"):
            return any(_equal(v, lit) for v in values for lit in self.literals)
        limit = self.literals[0]
        assert isinstance(limit, float)
        return any(_ordered(self.op, num, limit)
                   for num in (_number(v) for v in values) if num is not None)


def _number(value: str) -> float | None:
    try:
        return float(value.strip())
    except ValueError:
        return None


def _equal(value: str, literal: str | float) -> bool:
    if isinstance(literal, float):
        num = _number(value)
        return num is not None and num == literal
    return value.strip().casefold() == literal.strip().casefold()


def _ordered(op: str, value: float, limit: float) -> bool:
    return {"<": value < limit, "<=": value <= limit, ">": value > limit,
            ">=": value >= limit}[op]


@dataclass(frozen=True)
class Node:
    """``and`` / ``or`` over children, ``not`` of one child, a term, or ``always``."""

    kind: str  # and | or | not | term | always
    children: tuple[Node, ...] = ()
    term: Term | None = None

    def terms(self) -> list[Term]:
        if self.term is not None:
            return [self.term]
        return [t for c in self.children for t in c.terms()]

    def evaluate(self, lookup: Callable[[str], Values]) -> bool:
        """Every term is evaluated (no short-circuit), so the explanation is complete."""
        if self.kind == "always":
            return True
        if self.kind == "term":
            assert self.term is not None
            return self.term.holds(lookup(self.term.field))
        results = [c.evaluate(lookup) for c in self.children]
        if self.kind == "not":
            return not results[0]
        return all(results) if self.kind == "and" else any(results)


def _shown(tok: Token) -> str:
    return repr(tok.text) if tok.kind != "end" else "the end of the condition"


class _Parser:
    def __init__(self, text: str, known: Callable[[str], None]) -> None:
        self.tokens = tokenize(text)
        self.pos = 0
        self.depth = 0
        self.known = known

    def peek(self) -> Token:
        return self.tokens[self.pos]

    def take(self) -> Token:
        tok = self.tokens[self.pos]
        if tok.kind != "end":
            self.pos += 1
        return tok

    def expect(self, kind: str, what: str) -> Token:
        tok = self.take()
        if tok.kind != kind:
            raise RuleError(f"expected {what} at column {tok.col}, found "
                            f"{_shown(tok)}")
        return tok

    def is_word(self, word: str) -> bool:
        tok = self.peek()
        return tok.kind == "word" and tok.text == word

    def parse(self) -> Node:
        if self.peek().kind == "end":
            raise RuleError("empty condition (write 'always' to match everything)")
        node = self.or_()
        tok = self.peek()
        if tok.kind != "end":
            raise RuleError(f"unexpected {tok.text!r} at column {tok.col}")
        return node

    def _nest(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise RuleError(f"condition nested deeper than {MAX_DEPTH}")

    def or_(self) -> Node:
        self._nest()
        parts = [self.and_()]
        while self.is_word("or"):
            self.take()
            parts.append(self.and_())
        self.depth -= 1
        return parts[0] if len(parts) == 1 else Node("or", tuple(parts))

    def and_(self) -> Node:
        parts = [self.unary()]
        while self.is_word("and"):
            self.take()
            parts.append(self.unary())
        return parts[0] if len(parts) == 1 else Node("and", tuple(parts))

    def unary(self) -> Node:
        tok = self.peek()
        if self.is_word("not"):
            self.take()
            self._nest()
            inner = self.unary()
            self.depth -= 1
            return Node("not", (inner,))
        if tok.kind == "(":
            self.take()
            inner = self.or_()
            self.expect(")", "')'")
            return inner
        if self.is_word("always"):
            self.take()
            return Node("always")
        return Node("term", term=self.term())

    def term(self) -> Term:
        tok = self.take()
        if tok.kind != "field":
            raise RuleError(f"expected a tag keyword at column {tok.col}, found "
                            f"{_shown(tok)}")
        self.known(tok.text)
        name = tok.text
        nxt = self.take()
        if nxt.kind == "op":
            lit = self.literal()
            if nxt.text in ("<", "<=", ">", ">=") and not isinstance(lit, float):
                raise RuleError(f"{name} {nxt.text}: needs a number at column {nxt.col}")
            return Term(name, nxt.text, (lit,))
        if nxt.kind == "word" and nxt.text in ("exists", "missing"):
            return Term(name, nxt.text)
        if nxt.kind == "word" and nxt.text == "matches":
            pat = self.expect("string", "a quoted regular expression")
            try:
                compiled = re.compile(str(pat.value))
            except (re.error, OverflowError, RecursionError, ValueError) as exc:
                raise RuleError(f"{name} matches: bad regular expression at column "
                                f"{pat.col}: {exc}") from None
            return Term(name, "matches", pattern=compiled)
        if nxt.kind == "word" and nxt.text in ("in", "not"):
            op = "in"
            if nxt.text == "not":
                after = self.take()
                if not (after.kind == "word" and after.text == "in"):
                    raise RuleError(f"expected 'in' after '{name} not' at column {after.col}")
                op = "not in"
            return Term(name, op, self.literals())
        raise RuleError(f"expected an operator after {name} at column {nxt.col} (==, !=, <, "
                        "<=, >, >=, in, not in, matches, exists, missing)")

    def literal(self) -> str | float:
        tok = self.take()
        if tok.kind not in ("string", "number"):
            raise RuleError(f"expected a quoted string or a number at column {tok.col}")
        return tok.value

    def literals(self) -> tuple[str | float, ...]:
        self.expect("[", "'['")
        out = [self.literal()]
        while self.peek().kind == ",":
            self.take()
            if self.peek().kind == "]":  # a trailing comma
                break
            out.append(self.literal())
        self.expect("]", "']' or ','")
        return tuple(out)


def any_field(name: str) -> None:
    """A field check that accepts every identifier: for a structural check only (the
    settings, which load no DICOM library); ``routing_fields.check_field`` is the real one."""


def parse_condition(text: str, check: Callable[[str], None]) -> Node:
    """The condition's tree; RuleError (and nothing else) for any text that is not one.
    ``check`` refuses a field name (``dicom_gateway.routing_fields.check_field``: pydicom's
    dictionary and the virtual fields), kept apart so that this module imports no pydicom."""
    if not isinstance(text, str):
        raise RuleError("condition must be a string")
    return _Parser(text, check).parse()


# -- the facts of one instance ---------------------------------------------------------

_AGE = re.compile(r"^\s*(\d{1,3})\s*([DWMY])\s*$", re.IGNORECASE)
_DAYS_PER = {"D": 1.0, "W": 7.0, "M": 365.25 / 12, "Y": 365.25}


def age_years(patient_age: str, birth_date: str, study_date: str) -> float | None:
    """Age in years from PatientAge (``007Y``, ``006M``, ``010W``, ``005D``), else the
    completed years between PatientBirthDate and StudyDate; None when neither says."""
    m = _AGE.match(patient_age or "")
    if m:
        number, unit = int(m.group(1)), m.group(2).upper()
        return float(number) if unit == "Y" else number * _DAYS_PER[unit] / 365.25
    born, studied = _date(birth_date), _date(study_date)
    if born is None or studied is None or studied < born:
        return None
    years = studied.year - born.year - ((studied.month, studied.day) < (born.month, born.day))
    return float(years)


def _date(text: str) -> date | None:
    text = (text or "").strip()
    if not re.fullmatch(r"\d{8}", text):
        return None
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        return None


def _text(value: Any) -> str | None:
    """A single element value as text; None for values a condition cannot compare."""
    if value is None or isinstance(value, bytes | bytearray):
        return None
    text = str(value).strip()
    return text or None


@dataclass
class Facts:
    """What a condition can see of one instance: its header (a pydicom Dataset or any
    mapping-like ``get``) and the association's AE titles.  Values are read on demand."""

    dataset: Any
    calling_ae: str = ""
    called_ae: str = ""

    def values(self, name: str) -> Values:
        if name == "CallingAE":
            return _present((self.calling_ae,))
        if name == "CalledAE":
            return _present((self.called_ae,))
        if name == "PatientAgeYears":
            age = age_years(*(str(self._raw(k) or "") for k in
                              ("PatientAge", "PatientBirthDate", "StudyDate")))
            return None if age is None else (repr(age),)
        raw = self._raw(name)
        if raw is None:
            return None
        if isinstance(raw, str | bytes | bytearray) or not isinstance(raw, Iterable):
            return _present((_text(raw),))
        if _is_sequence(raw):  # a sequence: present, nothing to compare
            return ("",) if any(True for _ in raw) else None
        return _present(tuple(_text(v) for v in raw))

    def _raw(self, name: str) -> Any:
        try:
            value = self.dataset.get(name)
        except Exception:  # noqa: BLE001 - a value pydicom cannot decode is missing
            return None
        return getattr(value, "value", value)


def _is_sequence(raw: Any) -> bool:
    return type(raw).__name__ == "Sequence"


def _present(values: Iterable[str | None]) -> Values:
    kept = tuple(v for v in values if v)
    return kept or None


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
    sets = set(destination_sets)
    rules: list[Rule] = []
    if not isinstance(entries, list | tuple):
        return RuleSet(), [Problem(0, "rules must be a list of tables ([[rules]])")]
    names: set[str] = set()
    for n, entry in enumerate(entries):
        where = lines[n] if n < len(lines) else {}

        def line(key: str = "", _where: Mapping[str, int] = where) -> int:
            return _where.get(key, _where.get("", 0))

        if not isinstance(entry, Mapping):
            problems.append(Problem(line(), f"rule {n + 1}: must be a table ([[rules]])"))
            continue
        before = len(problems)
        label = f"rule {entry.get('name')!r}" if isinstance(entry.get("name"), str) \
            else f"rule {n + 1}"
        for key in entry:
            if key not in RULE_KEYS:
                close = difflib.get_close_matches(str(key), RULE_KEYS, n=1)
                problems.append(Problem(line(key), f"{label}: unknown key {key!r}"
                                        + (f" (did you mean {close[0]!r}?)" if close else "")))
        name = entry.get("name")
        if not isinstance(name, str) or not name.strip():
            problems.append(Problem(line("name"), f"{label}: needs a name"))
            name = ""
        elif len(name) > MAX_NAME_CHARS:
            problems.append(Problem(line("name"), f"{label}: a name of at most "
                                    f"{MAX_NAME_CHARS} characters"))
        elif name == DEFAULT_RULE:
            problems.append(Problem(line("name"), f"{label}: the name {DEFAULT_RULE!r} is "
                                    "the built-in admission's"))
        elif name in names:
            problems.append(Problem(line("name"), f"{label}: the name is used twice"))
        names.add(name)
        action = entry.get("action")
        if action not in ACTIONS:
            problems.append(Problem(line("action"), f"{label}: action must be process or "
                                    f"skip (got {action!r})"))
        priority = entry.get("priority", "")
        if priority and priority not in PRIORITIES:
            problems.append(Problem(line("priority"), f"{label}: priority must be live or "
                                    f"batch (got {priority!r})"))
        dests = entry.get("destinations", "")
        if not isinstance(dests, str):
            problems.append(Problem(line("destinations"), f"{label}: destinations must be "
                                    "the name of a destination set"))
            dests = ""
        elif dests and dests not in sets:
            close = difflib.get_close_matches(dests, sorted(sets), n=1)
            known = ", ".join(sorted(sets)) or "none"
            hint = f"did you mean {close[0]!r}?" if close else f"known: {known}"
            problems.append(Problem(line("destinations"), f"{label}: unknown destination set "
                                    f"{dests!r} ({hint})"))
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
            rules.append(Rule(str(name), str(condition), tree, str(action), str(priority),
                              dests, reason.strip(), line()))
    return RuleSet(tuple(rules)), problems


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

