"""``cxr-gateway tokens add|list|revoke``: the named API tokens reviewers log in with
(``worker.store.tokens``: shown once, kept hashed, revocable).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from worker.cli.common import add_group, add_reader, read_runtime
from worker.cli.errors import CommandError
from worker.store.roles import REVIEWER, ROLES

if TYPE_CHECKING:
    from worker.cli.common import Commands


def register(commands: Commands) -> None:
    """``tokens add|list|revoke``."""
    actions = add_group(commands, "tokens", "named API tokens for reviewers: add (printed "
                        "once), list, revoke", "add, list or revoke")
    add = add_reader(actions, "add", "a new token for NAME, printed once", cmd_tokens_add)
    add.add_argument("name", help="the reviewer's name, recorded with their questions and "
                     "verdicts")
    add.add_argument("--role", choices=ROLES, default=REVIEWER,
                     help="reviewer: read, ask, record verdicts, addenda of their own "
                     "questions; operator: also retry, tokens, association logs (default "
                     f"{REVIEWER})")
    add_reader(actions, "list", "every token's name and state (never the token)",
               cmd_tokens_list, json_option=True)
    revoke = add_reader(actions, "revoke", "revoke NAME's token and its dashboard sessions "
                        "at once", cmd_tokens_revoke)
    revoke.add_argument("name", help="whose token")


def cmd_tokens_add(args: argparse.Namespace) -> int:
    from worker.store import tokens

    rt = read_runtime(args)
    with rt.db.session() as s:
        try:
            token = tokens.add(s, args.name, args.role)
        except tokens.TokenError as exc:
            raise CommandError(str(exc)) from None
    print(token)
    print(f"the {args.role} token for {args.name}: shown this once, kept only hashed; log "
          "in with it at the dashboard or send it as 'Authorization: Bearer ...'",
          file=sys.stderr)
    return 0


def cmd_tokens_list(args: argparse.Namespace) -> int:
    from worker.store import tokens

    rt = read_runtime(args)
    with rt.db.session() as s:
        rows = tokens.listing(s)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        print(f"{r['name']:<24} {r['role']:<9} {r['state']:<8} created {r['created_at']}"
              + (f"  revoked {r['revoked_at']}" if r["revoked_at"] else "")
              + (f"  last used {r['last_used_at']}" if r["last_used_at"] else ""))
    if not rows:
        print("no named tokens (the operator token is always accepted)")
    return 0


def cmd_tokens_revoke(args: argparse.Namespace) -> int:
    from worker.store import tokens

    rt = read_runtime(args)
    with rt.db.session() as s:
        revoked = tokens.revoke(s, args.name)
    if not revoked:
        raise CommandError(f"{args.name!r} has no live token")
    print(f"revoked the token of {args.name}")
    return 0
