"""A site's regular expressions against sender-controlled values, bounded in time and size.

A rule's ``matches`` pattern is written by the site; the value it meets is written by
whoever sends the study.  Python's ``re`` backtracks without limit and holds the GIL while
it does, so one pattern with nested quantifiers and one crafted StudyDescription stopped
the whole gateway (the listener, reconciliation, SIGTERM).  Here every search runs in the
``regex`` module with a timeout (``SEARCH_SECONDS``), releasing the GIL while it works
(``concurrent=True``), on at most ``MAX_VALUE_CHARS`` of the value (a DICOM string this
long is already far past any VR's limit).  A search that times out is *false*: the caller
records which rule's term it was, says so once, and counts it; no other study waits.

``nested_quantifiers`` finds the usual cause ahead of time (``(a+)+``, ``(\\w*)*``, a
quantified group holding a quantified item), so ``rules check`` can warn about it.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from typing import Any

import regex

SEARCH_SECONDS = 0.05
MAX_VALUE_CHARS = 1024


class PatternError(ValueError):
    """The text is not a regular expression this engine accepts; the message says why."""


class SearchTimedOut(Exception):
    """A search ran past ``SEARCH_SECONDS``: the term is false, and the caller says so."""


@dataclass(frozen=True)
class Pattern:
    """A compiled site pattern; ``search`` is bounded (see the module docstring)."""

    text: str
    compiled: Any  # regex.Pattern

    def search(self, value: str) -> bool:
        try:
            found = self.compiled.search(value[:MAX_VALUE_CHARS], timeout=SEARCH_SECONDS,
                                         concurrent=True)
        except TimeoutError as exc:
            raise SearchTimedOut(self.text) from exc
        return found is not None


def compile_pattern(text: str) -> Pattern:
    """The pattern in ``re``'s syntax (``regex``'s version 0, which is ``re``-compatible)."""
    try:
        re.compile(text)  # the syntax the docs promise: what ``re`` accepts
        return Pattern(text, regex.compile(text, flags=regex.V0))
    except (re.error, regex.error, OverflowError, RecursionError, ValueError) as exc:
        raise PatternError(str(exc)) from None


_REPEATS = ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT")


def _unbounded_repeat(op: Any, arg: Any) -> bool:
    return str(op) in _REPEATS and (arg[1] > 1)


def _any(items: Any, found: Any) -> bool:
    """Whether ``found(op, arg)`` holds for an item of a parsed pattern or anything inside
    it (a repeat's body, a group's, each branch)."""
    for op, arg in items:
        if found(op, arg):
            return True
        inner = [arg[2]] if str(op) in _REPEATS else [arg[-1]] if str(op) == "SUBPATTERN" \
            else list(arg[1]) if str(op) == "BRANCH" else []
        if any(_any(sub, found) for sub in inner):
            return True
    return False


def nested_quantifiers(text: str) -> bool:
    """True when a repeated group holds a repeated item (``(a+)+``, ``(x|y*)*``): the shape
    that backtracks exponentially.  Read from the stdlib's own parse of the pattern."""
    # the stdlib's own parser of patterns (``re._parser``, Python 3.11+; a private module:
    # were it gone or changed, this check finds nothing and ``rules check`` warns of
    # nothing, while the time limit still bounds every search)
    parser = importlib.import_module("re._parser")

    def nested(op: Any, arg: Any) -> bool:  # a repeat whose body holds a repeat
        return _unbounded_repeat(op, arg) and _any(arg[2], _unbounded_repeat)

    try:
        return _any(parser.parse(text), nested)
    except (re.error, RecursionError, ValueError, AttributeError):
        return False
