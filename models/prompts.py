"""Prompts: the trained default, the wrapper's presets, and the report follow-up."""

from __future__ import annotations

DEFAULT_PROMPT = "Find abnormalities and support devices."
REPORT_PROMPT = "Write a structured report."

# The NVIDIA wrapper's presets; only `findings` is the trained prompt.
PROMPT_PRESETS: dict[str, str] = {
    "findings": DEFAULT_PROMPT,
    "comprehensive": "Provide a comprehensive image analysis, and list all abnormalities.",
    "educational": (
        "Examine the chest X-ray and explain the reasoning for each visible finding. "
        "State uncertainty explicitly."
    ),
    "structured": (
        "Write a concise structured response with sections: image quality, support devices, "
        "findings, impression, and uncertainties."
    ),
}

FINDINGS_MAX_NEW_TOKENS = 2048
REPORT_MAX_NEW_TOKENS = 4096


def resolve_prompt(prompt: str | None = None, preset: str | None = None,
                   fallback: str | None = None) -> str:
    """The prompt a run asks: an exact prompt wins over a preset; with neither, the
    caller's ``fallback`` (e.g. a wrapper fixture's own prompt), else the trained default.

    The one place this order is decided: ``cxr-gateway run`` (flags, fixtures) and a
    batch's recorded prompt both come through here, so they cannot drift apart.
    """
    if prompt:
        return prompt
    if preset:
        try:
            return PROMPT_PRESETS[preset]
        except KeyError:
            raise ValueError(
                f"unknown prompt preset {preset!r}; choose from {', '.join(PROMPT_PRESETS)}"
            ) from None
    return fallback or DEFAULT_PROMPT
