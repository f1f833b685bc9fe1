"""The live routing rules of a serve process: loaded at start, reloaded without a restart.

A site edits its settings file and either sends ``serve`` SIGHUP or just saves it: the
serve duties loop calls ``LiveRules.check`` every tick, which reloads when a SIGHUP came
or the file's modification time or size changed.  A file that fails validation is
refused whole: the rules in force stay, and the reason is logged, one line per problem
(with its line in the file), so a typo never silently turns routing off.

Only the ``rules`` and ``[destination_sets]`` of the file are taken live; other settings
still need a restart.  Rules given in the environment (``CXR_RULES``, which wins over the
file) are not reloaded from the file.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import Counter
from pathlib import Path

from dicom_gateway.routing.building import build_rule_set, refusal
from dicom_gateway.routing.fields import check_field
from dicom_gateway.routing.patterns import SEARCH_SECONDS
from dicom_gateway.routing.rules import RuleSet
from dicom_gateway.routing.rules_file import check_text
from worker.settings import Settings, SettingsError

log = logging.getLogger(__name__)

ENV_OVERRIDES = ("CXR_RULES", "CXR_DESTINATION_SETS")


def rules_of(settings: Settings) -> RuleSet:
    """The settings' routing rules, every tag keyword checked against pydicom's
    dictionary; SettingsError lists every problem (an empty set: the built-in admission
    decides alone)."""
    rules, problems = build_rule_set(list(settings.rules), settings.destination_sets,
                                     check=check_field)
    if problems:
        raise SettingsError(refusal(problems))
    return rules


class LiveRules:
    """The rule set in force, swapped whole on a valid reload (readers never lock)."""

    def __init__(self, settings: Settings, config_file: Path | None = None,
                 environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self._rules: RuleSet = rules_of(settings)
        self._requested = threading.Event()
        path = config_file or (Path(env["CXR_CONFIG_FILE"]) if env.get("CXR_CONFIG_FILE")
                               else None)
        pinned = [name for name in ENV_OVERRIDES if env.get(name) is not None]
        self.path: Path | None = None if pinned else path
        if pinned and path is not None:
            log.info("routing rules from %s: not reloaded from %s", ", ".join(pinned), path)
        self._seen = self._stamp()

    def current(self) -> RuleSet:
        return self._rules

    def request_reload(self) -> None:
        """From a signal handler: only sets a flag; the duties loop does the work."""
        self._requested.set()

    def _stamp(self) -> tuple[int, int] | None:
        if self.path is None:
            return None
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def check(self) -> bool | None:
        """Reload if asked to or the file changed: True (reloaded), False (refused), None
        (nothing to do)."""
        requested = self._requested.is_set()
        self._requested.clear()
        stamp = self._stamp()
        if not requested and stamp == self._seen:
            return None
        self._seen = stamp
        if self.path is None:
            log.info("SIGHUP: no settings file to reload routing rules from")
            return None
        return self.reload()

    def reload(self) -> bool:
        """Validate the file's rules and destination sets; swap them in only if valid."""
        assert self.path is not None
        try:
            text = self.path.read_text()
        except OSError as exc:
            log.error("routing rules reload refused: %s: %s; the previous %d rule(s) stay "
                      "in force", self.path, exc, len(self._rules.rules))
            return False
        rules, problems = check_text(text)
        if problems:
            for p in problems:
                log.error("routing rules reload refused: %s", p.render(str(self.path))
                          .removeprefix("error: "))
            log.error("routing rules reload refused: %d problem(s) in %s; the previous %d "
                      "rule(s) stay in force", len(problems), self.path,
                      len(self._rules.rules))
            return False
        self._rules = rules
        log.info("routing rules reloaded from %s: %d rule(s) (%s), %d destination set(s)",
                 self.path, len(rules.rules), ", ".join(r.name for r in rules.rules) or
                 "built-in admission only", len(rules.destination_sets))
        return True


# rule name -> searches that ran out of time in this process (``cxr_rule_timeouts_total``)
RULE_TIMEOUTS: Counter[str] = Counter()
_told: set[str] = set()


def note_timeouts(study_uid: str, timed_out: dict[str, tuple[str, ...]]) -> None:
    """Count each rule whose ``matches`` search ran out of time on this study (the term
    was false), and say so once per rule and process: a pattern that backtracks on some
    sender's values is the site's to fix, and one line names it."""
    for rule, terms in timed_out.items():
        RULE_TIMEOUTS[rule] += 1
        if rule not in _told:
            _told.add(rule)
            log.warning("routing rule %r: %s timed out (%.0f ms limit) on study %s and "
                        "counted as false; further time-outs of this rule are counted in "
                        "cxr_rule_timeouts_total, not logged", rule, ", ".join(terms),
                        SEARCH_SECONDS * 1000, study_uid)
