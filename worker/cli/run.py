"""``cxr-gateway run``: one image through the model, JSON on stdout, NVIDIA's wrapper
contract.  Its options and handler live with the rest of it in
``worker/research/run_command.py``; this module only registers them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from worker.research.run_command import add_arguments, cmd_run

if TYPE_CHECKING:
    from worker.cli.common import Commands


def register(commands: Commands) -> None:
    parser = commands.add_parser("run", help="one image through the model; JSON on stdout "
                                 "(the NV-Reason-CXR wrapper's contract)")
    add_arguments(parser)
    parser.set_defaults(func=cmd_run, quiet=True)
