"""roles for named tokens, and server-side dashboard sessions

Issue 31: every token could do everything, and the dashboard's cookie was the raw,
long-lived token.  A named token now has a role (``reviewer`` or ``operator``,
``worker.store.roles``); tokens made before this revision become reviewers, the role
that cannot retry, make tokens or read association logs (an operator makes a new one
with ``--role operator`` where needed).  A login now makes a session, kept here hashed
with the hash of the token it was made with (``worker.store.sessions``).

Revision ID: 0013
Revises: 0012
"""
import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("role", sa.String(length=16), nullable=False,
                                      server_default="reviewer"))
    op.create_table(
        "api_sessions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("sid_sha256", sa.String(length=64), nullable=False, unique=True),
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("last_seen_at", sa.Float(), nullable=False),
        sa.Column("ended_at", sa.Float(), nullable=True),
        sa.Column("ended_by", sa.String(length=16), nullable=True),
    )
    op.create_index("ix_api_sessions_token_sha256", "api_sessions", ["token_sha256"])


def downgrade() -> None:
    op.drop_index("ix_api_sessions_token_sha256", table_name="api_sessions")
    op.drop_table("api_sessions")
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.drop_column("role")
