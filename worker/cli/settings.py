"""``cxr-gateway settings``: the settings in effect, where each came from, and this
installation's identity (the root of every SR UID).  It reads; it never creates a
database."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from worker.cli.common import (
    add_reader,
    config_file,
    existing_runtime,
    load,
    overrides,
    warn_unknown,
)
from worker.cli.errors import NoGatewayDatabase
from worker.settings import FIELDS, env_name, shown_value, sources

if TYPE_CHECKING:
    from worker.cli.common import Commands


def register(commands: Commands) -> None:
    add_reader(commands, "settings", "the settings in effect, where each came from, and this "
               "installation's identity", cmd_settings)


def cmd_settings(args: argparse.Namespace) -> int:
    settings = load(args)
    found = sources(config_file(args), None, **overrides(args))
    width = max(len(env_name(n)) for n in FIELDS)
    print(f"{'setting':<{width}}  {'value':<40} source")
    for name in FIELDS:
        value = shown_value(settings, name)
        print(f"{env_name(name):<{width}}  {value:<40} {found[name]}")
    warn_unknown()
    try:
        rt = existing_runtime(settings)
        print(f"\ninstallation identity (root of every SR UID): {rt.installation_seed}")
    except NoGatewayDatabase:
        print(f"\ninstallation identity: none yet (the first serve creates the database in "
              f"{settings.data_dir})")
    return 0
