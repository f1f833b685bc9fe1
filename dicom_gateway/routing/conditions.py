"""Routing-rule conditions: a small tokenizer and recursive-descent parser (never
Python ``eval``) into a tree evaluated against one instance's values.  This docstring is
the grammar and its semantics, what a site reads::

    condition := or
    or        := and ("or" and)*
    and       := unary ("and" unary)*
    unary     := "not" unary | "(" or ")" | "always" | term
    term      := FIELD ("==" | "!=" | "<" | "<=" | ">" | ">=") literal
               | FIELD ["not"] "in" "[" literal ("," literal)* "]"
               | FIELD "matches" STRING        (a search: anchor with ^ and $)
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
  expression as written (``re``'s syntax; ``(?i)`` for case-insensitive), bounded in time
  and in the length of value it reads (``dicom_gateway.routing.patterns``): a search that
  runs out of time is false, and the evaluation says the term timed out;
* every term is evaluated once per instance, in the order written (no short-circuit, so
  the explanation is complete);
* ``<``, ``<=``, ``>``, ``>=`` are numeric (the literal must be a number; a value that is
  not a number compares false); ``==`` with a number literal compares numerically.

Pure, and no pydicom: the field check is a parameter of ``parse_condition``
(``dicom_gateway.routing.fields.check_field`` where rules are used, ``any_field`` for the
settings' shape check), so that the settings can parse a condition without loading a
DICOM library.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from dicom_gateway.routing.patterns import Pattern, PatternError, SearchTimedOut, compile_pattern

MAX_CONDITION_CHARS = 4000
MAX_DEPTH = 40
_COMPARISONS = ("==", "!=", "<=", ">=", "<", ">")
_WORDS = {"and", "or", "not", "in", "matches", "exists", "missing", "always"}

FieldCheck = Callable[[str], None]  # raises RuleError for a field name no condition may use

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
    pattern: Pattern | None = None

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
        if self.op == "matches":  # may raise SearchTimedOut (see ``outcome``)
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


    def outcome(self, values: Values) -> Outcome:
        try:
            return Outcome(self, self.holds(values), values is None)
        except SearchTimedOut:
            return Outcome(self, False, values is None, timed_out=True)


@dataclass(frozen=True)
class Outcome:
    """One term's result for one instance: held, the field missing, the search timed out."""

    term: Term
    held: bool
    missing: bool
    timed_out: bool = False


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

    def evaluate(self, lookup: Callable[[str], Values],
                 outcomes: list[Outcome] | None = None) -> bool:
        """Every term is evaluated once (no short-circuit), so the explanation is complete;
        each term's outcome is appended to ``outcomes``, in the order of ``terms()``."""
        if self.kind == "always":
            return True
        if self.kind == "term":
            assert self.term is not None
            found = self.term.outcome(lookup(self.term.field))
            if outcomes is not None:
                outcomes.append(found)
            return found.held
        results = [c.evaluate(lookup, outcomes) for c in self.children]
        if self.kind == "not":
            return not results[0]
        return all(results) if self.kind == "and" else any(results)


def _shown(tok: Token) -> str:
    return repr(tok.text) if tok.kind != "end" else "the end of the condition"


class _Parser:
    def __init__(self, text: str, known: FieldCheck) -> None:
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
                compiled = compile_pattern(str(pat.value))
            except PatternError as exc:
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
    settings, which load no DICOM library); ``dicom_gateway.routing.fields.check_field`` is
    the real one."""


def parse_condition(text: str, check: FieldCheck) -> Node:
    """The condition's tree; RuleError (and nothing else) for any text that is not one.
    ``check`` refuses a field name (``dicom_gateway.routing.fields.check_field``: pydicom's
    dictionary and the virtual fields), kept apart so that this module imports no pydicom."""
    if not isinstance(text, str):
        raise RuleError("condition must be a string")
    return _Parser(text, check).parse()
