"""All settings in one typed place (pydantic-settings).

Precedence: built-in defaults < an optional TOML file (``CXR_CONFIG_FILE`` or
``--config``) < environment variables ``CXR_<FIELD>`` < command-line options.  Defaults
run everything on one machine with nothing but Python: SQLite in the data directory and
an embedded broker, so ``cxr-gateway serve`` works on a laptop and the same code scales
out by pointing ``CXR_DATABASE_URL`` and ``CXR_BROKER_URL`` at PostgreSQL and Redis.

Every value is validated when it is read (a port outside 1-65535, a negative duration,
an AE title over 16 characters are refused with one message naming the variable), and
``sources`` tells where each value in effect came from.

What lives here: ``types`` (the value types), ``fields`` (the model: every setting, its
bounds and meaning, and the values derived from them) and ``loading`` (gathering,
one-line errors, the README table).
What it may import: ``pydantic``, ``models`` (the backend registry and labels), the light
modules of ``dicom_gateway`` (``listen.config``, ``imaging.names``, ``transfer.destinations``)
and ``worker.logs``; never the DICOM network stack, numpy or PIL (``cxr-gateway
settings`` and ``evaluate`` must not load them), and nothing else of ``worker``.
"""

from __future__ import annotations

from worker.settings.fields import (
    CONFIG_FILE_VAR,
    EMBEDDED_BROKER,
    ENV_PREFIX,
    Settings,
)
from worker.settings.loading import (
    FIELDS,
    SECRET_FIELDS,
    env_name,
    load_settings,
    settings_table,
    shown_value,
    sources,
    unknown_variables,
)
from worker.settings.types import SettingsError, usable_cores

__all__ = [
    "CONFIG_FILE_VAR", "EMBEDDED_BROKER", "ENV_PREFIX", "FIELDS", "SECRET_FIELDS", "Settings",
    "SettingsError", "env_name", "load_settings", "settings_table", "shown_value", "sources",
    "unknown_variables", "usable_cores",
]
