"""The lines a TOML parser does not give: where each ``[[rules]]`` entry and its keys,
each ``[destination_sets]`` key and each top-level key stand in a settings file's text,
so that a problem can name its line."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_HEADER = re.compile(r"^\s*\[\[\s*rules\s*\]\]\s*(#.*)?$")
_TABLE = re.compile(r"^\s*\[")
_KEY = re.compile(r"^\s*([A-Za-z0-9_-]+|\"[^\"]*\")\s*=")


@dataclass(frozen=True)
class RuleLines:
    """``entries``: per ``[[rules]]`` entry, its header ("") and each key -> line;
    ``sets``: the ``[destination_sets]`` header (""), each set's name, and each top-level
    key as ``top:KEY`` -> line."""

    entries: list[dict[str, int]] = field(default_factory=list)
    sets: dict[str, int] = field(default_factory=dict)

    def of_set(self, name: str) -> int:
        return self.sets.get(name, self.sets.get("", 0))

    def of_top(self, key: str) -> int:
        return self.sets.get(f"top:{key}", 0)


def entry_lines(text: str) -> RuleLines:
    """The lines of ``text``'s rules, destination sets and top-level keys."""
    lines = RuleLines()
    section: str | None = ""  # "" top level, "rules", "destination_sets", None: other
    for number, raw in enumerate(text.splitlines(), 1):
        if _HEADER.match(raw):
            lines.entries.append({"": number})
            section = "rules"
            continue
        if _TABLE.match(raw):
            inner = raw.strip().strip("[]").strip()
            section = "destination_sets" if inner == "destination_sets" else None
            if section:
                lines.sets.setdefault("", number)
            continue
        key = _KEY.match(raw)
        if not key:
            continue
        name = key.group(1).strip('"')
        if section == "rules" and lines.entries:
            lines.entries[-1].setdefault(name, number)
        elif section == "destination_sets":
            lines.sets.setdefault(name, number)
        elif section == "":
            lines.sets.setdefault(f"top:{name}", number)
    return lines
