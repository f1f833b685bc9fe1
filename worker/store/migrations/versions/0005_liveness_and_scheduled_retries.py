"""liveness and scheduled retries: process heartbeats, job holders, next-attempt times

Revision ID: 0005
Revises: 0004
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "workers",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("host", sa.String(length=128), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("queues", sa.String(length=64), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("last_beat", sa.Float(), nullable=False),
        sa.Column("stopped_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("name"),
    )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("holder", sa.String(length=128), nullable=False,
                                      server_default=""))
        batch_op.add_column(sa.Column("held_since", sa.Float(), nullable=False,
                                      server_default="0"))
        batch_op.add_column(sa.Column("enqueued_at", sa.Float(), nullable=False,
                                      server_default="0"))
        batch_op.add_column(sa.Column("next_attempt_at", sa.Float(), nullable=False,
                                      server_default="0"))
        batch_op.add_column(sa.Column("retries", sa.Integer(), nullable=False,
                                      server_default="0"))
        batch_op.add_column(sa.Column("last_error", sa.Text(), nullable=False,
                                      server_default=""))
        batch_op.create_index(batch_op.f("ix_jobs_holder"), ["holder"], unique=False)
        # the per-job lease is replaced by the holder's heartbeat
        batch_op.drop_index(batch_op.f("ix_jobs_lease_until"))
        batch_op.drop_column("lease_until")
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("next_attempt_at", sa.Float(), nullable=False,
                                      server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_column("next_attempt_at")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("lease_until", sa.Float(), nullable=False,
                                      server_default="0"))
        batch_op.create_index(batch_op.f("ix_jobs_lease_until"), ["lease_until"],
                              unique=False)
        batch_op.drop_index(batch_op.f("ix_jobs_holder"))
        for name in ("last_error", "retries", "next_attempt_at", "enqueued_at", "held_since",
                     "holder"):
            batch_op.drop_column(name)
    op.drop_table("workers")
