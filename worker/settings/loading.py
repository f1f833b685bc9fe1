"""Reading settings: defaults < the TOML file < the environment < the command line.

``load_settings`` gathers the values itself (rather than letting pydantic-settings read
the environment) so that ``sources`` can say where each value in effect came from and an
invalid one is refused in one line naming the variable or file that set it.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from worker.settings.fields import CONFIG_FILE_VAR, ENV_PREFIX, Settings
from worker.settings.types import SettingsError

FIELDS = Settings.model_fields
SECRET_FIELDS = ("api_token", "openai_api_key")


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def _read_file(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SettingsError(f"config file {path}: {exc}") from exc
    for key in data:
        if key not in FIELDS:
            close = difflib.get_close_matches(key, FIELDS, n=1)
            raise SettingsError(f"config file {path}: unknown setting {key!r}"
                                + (f" (did you mean {close[0]!r}?)" if close else ""))
    return data


def _config_path(config_file: Path | None, env: Mapping[str, str]) -> Path | None:
    if config_file is not None:
        return config_file
    return Path(env[CONFIG_FILE_VAR]) if env.get(CONFIG_FILE_VAR) else None


def _gather(config_file: Path | None, env: Mapping[str, str], overrides: Mapping[str, Any]
            ) -> tuple[dict[str, Any], dict[str, str]]:
    """Every value that is not a default, and where each came from."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    path = _config_path(config_file, env)
    if path is not None:
        for key, raw in _read_file(path).items():
            values[key], sources[key] = raw, f"file {path}"
    for name in FIELDS:
        raw = env.get(env_name(name))
        if raw is not None:
            values[name], sources[name] = raw, f"environment {env_name(name)}"
    for name, value in overrides.items():
        if value is not None:
            values[name], sources[name] = value, "command line"
    return values, sources


def _one_line(exc: ValidationError, sources: Mapping[str, str]) -> str:
    err = exc.errors()[0]
    field = str(err["loc"][0]) if err["loc"] else ""
    where = sources.get(field, "")
    name = env_name(field) if field else "settings"
    if where.startswith("file"):
        name = f"{field} in {where[5:]}"
    message = str(err["msg"]).removeprefix("Value error, ")
    shown = err.get("input")
    got = f" (got {shown!r})" if field and not isinstance(shown, dict) else ""
    return f"{name}: {message}{got}"


def load_settings(config_file: Path | None = None, environ: Mapping[str, str] | None = None,
                  **overrides: Any) -> Settings:
    """Defaults < the TOML file < the environment < ``overrides``; SettingsError says why not."""
    env = os.environ if environ is None else environ
    values, sources = _gather(config_file, env, overrides)
    try:
        return Settings(**values)
    except ValidationError as exc:
        raise SettingsError(_one_line(exc, sources)) from None


def sources(config_file: Path | None = None, environ: Mapping[str, str] | None = None,
            **overrides: Any) -> dict[str, str]:
    """Where each setting's value comes from: default, file, environment or command line."""
    env = os.environ if environ is None else environ
    _, found = _gather(config_file, env, overrides)
    return {name: found.get(name, "default") for name in FIELDS}


def unknown_variables(environ: Mapping[str, str] | None = None) -> list[str]:
    """``CXR_*`` variables that name no setting, each with its likely intended name."""
    env = os.environ if environ is None else environ
    known = {env_name(f) for f in FIELDS} | {CONFIG_FILE_VAR}
    out = []
    for key in sorted(k for k in env if k.startswith(ENV_PREFIX) and k not in known):
        # 0.7, not difflib's 0.6: short names (CXR_RULES) must not be offered for
        # unrelated variables such as CXR_FUZZ_EXAMPLES
        close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.7)
        out.append(f"{key} is not a setting" + (f" (did you mean {close[0]}?)" if close
                                                else ""))
    return out


def shown_value(settings: Settings, name: str) -> str:
    """A value as ``settings`` prints it: lists joined, secrets and passwords masked."""
    from worker.logs import mask_url

    value = getattr(settings, name)
    if name in SECRET_FIELDS:
        return "***" if value else ""
    if name == "destination_sets":  # issue 23: name=AE@host:port,...;name2=...
        return ";".join(f"{k}={','.join(str(d) for d in v)}" for k, v in value.items())
    if name == "rules":  # issue 23: the names only (a condition may list accession numbers)
        return ",".join(str(r.get("name", "?")) for r in value)
    if name.endswith("_url"):
        return mask_url(str(value))
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def settings_table() -> str:
    """Markdown table of every setting, for the README."""
    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for name, f in FIELDS.items():
        default = f.default
        if isinstance(default, tuple):
            default = ",".join(str(d) for d in default)
        rows.append(f"| `{env_name(name)}` | `{default}` | {f.description} |")
    rows.append(f"| `{CONFIG_FILE_VAR}` | `` | Optional TOML file with the same keys "
                "(lower case). |")
    return "\n".join(rows)
