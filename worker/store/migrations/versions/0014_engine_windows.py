"""each GPU worker's in-flight window on its inference engine

Issue 32: the number of studies a GPU worker keeps in flight on an openai engine is now
found from the engine (``models.engine_window``), not a constant; the dashboard and the
metrics endpoint read each live worker's current figure from this table
(``worker.store.engine_windows``).

Revision ID: 0014
Revises: 0013
"""
import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "engine_windows",
        sa.Column("worker", sa.String(length=128), primary_key=True),
        sa.Column("window", sa.Integer(), nullable=False),
        sa.Column("in_flight", sa.Integer(), nullable=False),
        sa.Column("peak", sa.Integer(), nullable=False),
        sa.Column("ceiling", sa.Integer(), nullable=False),
        sa.Column("steered_by", sa.String(length=32), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("engine_windows")
