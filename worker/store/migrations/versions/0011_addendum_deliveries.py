"""addendum deliveries: addenda delivered and retried through ``deliveries``

Issue 30: an addendum SR was retried by a sleep inside its task, its state a text on the
question.  Now each (job, document, destination) is one ``deliveries`` row, scheduled by
the database as the first SR's are: ``document`` is "" for the job's first SR (and its
pages) and ``addendum:<question id>`` for an addendum; ``holder``/``held_since`` claim
a row while one process sends it, so a redelivered task never sends it twice.

Revision ID: 0011
Revises: 0010
"""
import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

NEW_COLUMNS = (("document", sa.String(length=80), ""), ("holder", sa.String(length=128), ""),
               ("held_since", sa.Float(), "0"))


def _table_before() -> sa.Table:
    """deliveries as 0005 left it, less its unnamed (job_id, destination) constraint:
    SQLite cannot drop an unnamed constraint, so the batch copy is built from this."""
    return sa.Table(
        "deliveries", sa.MetaData(),
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("job_id", sa.Integer(), sa.ForeignKey("jobs.id"), nullable=False,
                  index=True),
        sa.Column("destination", sa.String(length=128), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.Column("next_attempt_at", sa.Float(), nullable=False, server_default="0"),
    )


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    if not sqlite:
        op.drop_constraint("deliveries_job_id_destination_key", "deliveries", type_="unique")
    with op.batch_alter_table("deliveries", schema=None,
                              copy_from=_table_before() if sqlite else None,
                              recreate="always" if sqlite else "auto") as batch_op:
        for name, kind, default in NEW_COLUMNS:
            batch_op.add_column(sa.Column(name, kind, nullable=False, server_default=default))
        batch_op.create_unique_constraint("uq_deliveries_job_document_destination",
                                          ["job_id", "document", "destination"])
        batch_op.create_index("ix_deliveries_document", ["document"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_deliveries_document")
        batch_op.drop_constraint("uq_deliveries_job_document_destination", type_="unique")
        for name, _kind, _default in NEW_COLUMNS:
            batch_op.drop_column(name)
        batch_op.create_unique_constraint("deliveries_job_id_destination_key",
                                          ["job_id", "destination"])
