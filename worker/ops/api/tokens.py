"""``/api/tokens``: the named tokens, for operators (``roles.TOKENS``) only.

The same three acts as ``cxr-gateway tokens add|list|revoke`` (``worker.store.tokens``):
a new token is in the answer to its ``POST`` and nowhere else; a revoked one fails at
once, with every dashboard session made with it.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException

from worker.ops.api.auth import permit, require_token
from worker.ops.api.state import State
from worker.store import roles, tokens

router = APIRouter(dependencies=[Depends(require_token), permit(roles.TOKENS)])


@router.get("/api/tokens", tags=["tokens"])
def list_tokens(state: State) -> list[dict[str, Any]]:
    """Every named token: name, role, state and times (never the token)."""
    with state.db.session() as session:
        return tokens.listing(session)


@router.post("/api/tokens", tags=["tokens"], status_code=201)
def add_token(state: State, name: Annotated[str, Body(embed=True, max_length=64)],
              role: Annotated[str, Body(embed=True, max_length=16)] = roles.REVIEWER
              ) -> dict[str, str]:
    """A new token for ``name``: shown in this answer only."""
    with state.db.session() as session:
        try:
            token = tokens.add(session, name, role)
        except tokens.TokenError as exc:
            raise HTTPException(422, str(exc)) from None
    return {"name": name, "role": role, "token": token}


@router.delete("/api/tokens/{name}", tags=["tokens"])
def revoke_token(state: State, name: str) -> dict[str, Any]:
    """Revoke ``name``'s token and end its sessions."""
    with state.db.session() as session:
        if not tokens.revoke(session, name):
            raise HTTPException(404, f"{name!r} has no live token")
    return {"name": name, "state": "revoked"}
