"""The reader study's design, as the NV-Reason-CXR paper ran it (its section 4.1): the three
conditions, the questionnaire and the schedule.  Pure: nothing here touches a database.

Each reader reads every case three times, in the paper's order: with no AI (a report
dictated as in routine practice), with the model's abnormality list only (the reader's own
report, revised), and with the full reasoning and the structured report (which the reader
may copy and edit).  "After a short distraction, the case is re-presented": a reader never
meets one case twice in a row.

The schedule is three blocks, one per condition, each holding every case in an order of
its own drawn from the study's seed and the reader's name: every case's no-AI read comes
before its labels-only read, which comes before its full-reasoning read, and between two
reads of one case lie all the other cases of the block (at least one: where a block would
start with the case the previous one ended with, that case swaps places with its
neighbour).  ``random.Random`` seeded with a string is the same on every platform and
Python release since 3.2 (version 2 seeding hashes it with SHA-512), so the seed and the
names give the same schedule wherever the study is made again.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

NO_AI = "no_ai"
LABELS = "labels"
FULL = "full"
CONDITIONS = (NO_AI, LABELS, FULL)  # the paper's order
CONDITION_NAMES = {NO_AI: "No AI", LABELS: "Labels only", FULL: "Full reasoning"}
LIKERT = {1: "Strongly disagree", 2: "Disagree", 3: "Neither agree nor disagree",
          4: "Agree", 5: "Strongly agree"}
TIME_SAVED = "B3"  # "approximate percentage of time saved": calculated, not asked


@dataclass(frozen=True)
class Item:
    """One questionnaire statement; ``paper``: the paper's published mean (Figure 1 only
    gives numbers; Figures 3 and 4 are described in words, in ``paper_words``)."""

    code: str
    section: str
    text: str
    conditions: tuple[str, ...]
    paper: float | None = None
    paper_words: str = ""


ACCURACY = "A. Accuracy and reasoning quality"
EFFICIENCY = "B. Time and efficiency"
TRUST = "C. Trust and confidence"
ITEMS = (
    Item("A1", ACCURACY, "The reasoning trace includes correct statements about key "
         "observations.", (FULL,), 4.5),
    Item("A2", ACCURACY, "The reasoning does not include speculative or unsupported "
         "statements.", (FULL,), 4.7),
    Item("A3", ACCURACY, "The AI identified a relevant finding I initially missed.",
         (FULL,), 3.8),
    Item("A4", ACCURACY, "Uncertainty and limitations are explicitly stated when "
         "appropriate.", (FULL,), 4.6),
    Item("B1", EFFICIENCY, "The AI output reduced the time required to compose my report.",
         (LABELS, FULL), paper_words="full: nearly all Agree or Strongly agree; labels "
         "only: mostly Disagree"),
    Item("B2", EFFICIENCY, "The AI output helped me reach a decision faster.", (LABELS, FULL),
         paper_words="full: mostly Agree or Strongly agree; labels only: little benefit"),
    Item("C1", TRUST, "After reading the AI output, I feel more confident (less uncertain) "
         "in my decision.", (LABELS, FULL), paper_words="mostly Agree or Strongly agree; "
         "full about half a point above labels only"),
    Item("C2", TRUST, "If the AI had disagreed with me on this case, I would re-evaluate and "
         "re-examine the study.", (LABELS, FULL), paper_words="labels only: Agree or "
         "Neither; full: mostly Strongly agree"),
    Item("C3", TRUST, "The AI's suggestions improved my final decision.", (LABELS, FULL),
         paper_words="labels only: generally Disagree; full: mostly Agree or Strongly agree"),
    Item("C4", TRUST, "The AI did not bias me toward incorrect conclusions.", (LABELS, FULL),
         paper_words="both Agree or Strongly agree, full higher"),
)
ITEM_BY_CODE = {item.code: item for item in ITEMS}
TIME_SAVED_TEXT = "Approximate percentage of time saved on this case (calculated)"


def items_for(condition: str) -> tuple[Item, ...]:
    """The statements a reader answers after a report under ``condition`` (none after no
    AI: every statement is about the AI's output)."""
    return tuple(item for item in ITEMS if condition in item.conditions)


class DesignError(ValueError):
    """A study that cannot be scheduled or an answer that is not one; says why."""


def check_answers(condition: str, answers: Mapping[str, int]) -> dict[str, int]:
    """The questionnaire for ``condition`` complete and in range, else DesignError naming
    what is missing or wrong."""
    wanted = [item.code for item in items_for(condition)]
    extra = sorted(set(answers) - set(wanted))
    if extra:
        raise DesignError(f"not asked under {CONDITION_NAMES[condition]}: {', '.join(extra)}")
    missing = [code for code in wanted if code not in answers]
    if missing:
        raise DesignError(f"every statement needs an answer; missing {', '.join(missing)}")
    bad = [code for code in wanted if answers[code] not in LIKERT]
    if bad:
        raise DesignError(f"answers are 1 (strongly disagree) to 5 (strongly agree): "
                          f"{', '.join(bad)}")
    return {code: int(answers[code]) for code in wanted}


Slot = tuple[int, str]  # (case number, condition)


def reader_schedule(cases: int, reader: str, seed: int) -> list[Slot]:
    """``reader``'s reads of cases 1..``cases``: three blocks in the paper's order."""
    if cases < 2:
        raise DesignError("a reader study needs at least 2 cases: other cases lie between "
                          "the conditions of one case")
    rng = random.Random(f"cxr-readers:{seed}:{reader}")
    out: list[Slot] = []
    for condition in CONDITIONS:
        order = list(range(1, cases + 1))
        rng.shuffle(order)
        if out and order[0] == out[-1][0]:
            order[0], order[1] = order[1], order[0]
        out.extend((case, condition) for case in order)
    return out


def schedule(cases: int, readers: Sequence[str], seed: int) -> dict[str, list[Slot]]:
    """Every reader's schedule, fixed by the seed and the names."""
    if len(set(readers)) != len(readers) or not readers:
        raise DesignError("readers: one or more distinct names")
    return {reader: reader_schedule(cases, reader, seed) for reader in readers}


def schedule_problems(slots: Sequence[Slot], cases: int) -> list[str]:
    """What breaks the scheduling rule in one reader's slots ([] when nothing does)."""
    problems = []
    seen: dict[int, list[str]] = {}
    for case, condition in slots:
        seen.setdefault(case, []).append(condition)
    if sorted(seen) != list(range(1, cases + 1)):
        problems.append("not every case is scheduled")
    problems += [f"case {case} reads {order}, not {list(CONDITIONS)}"
                 for case, order in sorted(seen.items()) if order != list(CONDITIONS)]
    problems += [f"case {a[0]} twice in a row at positions {i + 1} and {i + 2}"
                 for i, (a, b) in enumerate(zip(slots, slots[1:], strict=False))
                 if a[0] == b[0]]
    return problems
