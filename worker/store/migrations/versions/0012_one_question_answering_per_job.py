"""one question answering per job, and a bounded retry of answering

Issue 31: two workers could answer two questions of one job at once (the busy and waiting
lists were read apart), so the second was asked without the first's answer, or both took
one turn number.  A partial unique index lets the database refuse a second ``answering``
question of a job.  ``attempts`` counts the times answering a question failed for a reason
that may pass (a worker's error, an out-of-memory), so that it is retried a bounded number
of times and then failed with its reason, never left ``answering``.

Revision ID: 0012
Revises: 0011
"""
import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

ANSWERING = sa.text("state = 'answering'")


def upgrade() -> None:
    with op.batch_alter_table("questions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("attempts", sa.Integer(), nullable=False,
                                      server_default="0"))
    op.create_index("uq_questions_one_answering_per_job", "questions", ["job_id"],
                    unique=True, sqlite_where=ANSWERING, postgresql_where=ANSWERING)


def downgrade() -> None:
    op.drop_index("uq_questions_one_answering_per_job", table_name="questions")
    with op.batch_alter_table("questions", schema=None) as batch_op:
        batch_op.drop_column("attempts")
