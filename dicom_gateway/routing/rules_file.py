"""A settings file's text: its rules and destination sets validated, every problem with
its line, and every tag keyword checked against pydicom's dictionary (for ``cxr-gateway
rules check`` and a serve's live reload).  Other settings in the file are not looked at
here (``load_settings`` does that).
"""

from __future__ import annotations

import re
import tomllib

from dicom_gateway.routing.building import build_rule_set
from dicom_gateway.routing.fields import check_field
from dicom_gateway.routing.rule_checks import Problem
from dicom_gateway.routing.rules import RuleSet
from dicom_gateway.routing.toml_lines import entry_lines


def check_text(text: str) -> tuple[RuleSet, list[Problem]]:
    """The text's rule set, and every problem found, in line order."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"line (\d+)", str(exc))
        return RuleSet(), [Problem(int(m.group(1)) if m else 0, f"not TOML: {exc}")]
    return build_rule_set(data.get("rules", []), data.get("destination_sets", {}),
                          entry_lines(text), check=check_field)
