"""Roles: what a named token may do, the one owner of every permission the HTTP service
checks.

Two roles, because a reading room has two kinds of people: a ``reviewer`` reads studies
and their results, asks the model about them, records verdicts and asks for the addendum
SR of a thread they asked in; an ``operator`` also runs the gateway: retries jobs, makes
and revokes tokens, reads what only the site's operators should (association logs, which
name every sender; reader studies' results, which readers must not see while they read),
and asks for the addendum of anyone's thread.  A reader in a reader study is a reviewer
whose name the study lists; what they may see of its cases is the study's to say
(``reader_studies.visible``), on top of the role.  The single operator
token (``CXR_API_TOKEN`` or the generated file) is always ``operator``.
"""

from __future__ import annotations

REVIEWER = "reviewer"
OPERATOR = "operator"

READ = "read"  # jobs, studies, previews, threads, verdicts, batches, the overview
ASK = "ask"  # a follow-up question about a study
REVIEW = "review"  # a verdict
ADDENDUM = "addendum"  # the addendum SR of a thread the caller asked in
ADDENDUM_ANY = "addendum-any"  # ... of anyone's thread
RETRY = "retry"  # send a job through the pipeline again
TOKENS = "tokens"  # list, make and revoke named tokens
ASSOCIATIONS = "associations"  # the association log: who sent what, when
STUDY_RESULTS = "study-results"  # every reader study's progress and its summary

PERMISSIONS: dict[str, frozenset[str]] = {
    REVIEWER: frozenset({READ, ASK, REVIEW, ADDENDUM}),
    OPERATOR: frozenset({READ, ASK, REVIEW, ADDENDUM, ADDENDUM_ANY, RETRY, TOKENS,
                         ASSOCIATIONS, STUDY_RESULTS}),
}
ROLES = tuple(PERMISSIONS)


class RoleError(ValueError):
    """A role the gateway does not have; the message lists those it has."""


def check_role(role: str) -> str:
    """``role`` if the gateway has it."""
    if role not in PERMISSIONS:
        raise RoleError(f"{role!r} is not a role: one of {', '.join(ROLES)}")
    return role


def allows(role: str, permission: str) -> bool:
    """Whether ``role`` holds ``permission`` (an unknown role holds none)."""
    return permission in PERMISSIONS.get(role, frozenset())
