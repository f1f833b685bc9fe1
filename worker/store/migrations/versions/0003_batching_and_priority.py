"""job priority, stored model input and claiming worker (cross-job GPU batching)

Revision ID: 0003
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("priority", sa.Integer(), nullable=False,
                                      server_default="0"))
        batch_op.add_column(sa.Column("model_input", sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column("worker", sa.String(length=128), nullable=False,
                                      server_default=""))
        batch_op.create_index(batch_op.f("ix_jobs_priority"), ["priority"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_jobs_priority"))
        batch_op.drop_column("worker")
        batch_op.drop_column("model_input")
        batch_op.drop_column("priority")
