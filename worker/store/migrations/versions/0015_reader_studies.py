"""reader studies: studies, cases, scheduled reads and questionnaire answers

Issue 34: the paper's reader study on a site's own cases (``worker.store.reader_studies``).
Every read is a row from the moment the study is made (the recorded schedule), filled in
as the reader goes; nothing here is ever purged.

Revision ID: 0015
Revises: 0014
"""
import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reader_studies",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(length=64), nullable=False, unique=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("readers", sa.Text(), nullable=False),
        sa.Column("template", sa.Text(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("mock", sa.Boolean(), nullable=False),
    )
    op.create_table(
        "reader_cases",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("study_id", sa.Integer(), sa.ForeignKey("reader_studies.id"), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("study_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("reference", sa.String(length=16), nullable=False),
        sa.Column("reference_source", sa.Text(), nullable=False),
        sa.UniqueConstraint("study_id", "number"),
    )
    op.create_index("ix_reader_cases_study_id", "reader_cases", ["study_id"])
    op.create_table(
        "reader_reads",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("study_id", sa.Integer(), sa.ForeignKey("reader_studies.id"), nullable=False),
        sa.Column("reader", sa.String(length=64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), sa.ForeignKey("reader_cases.id"), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("condition", sa.String(length=16), nullable=False),
        sa.Column("shown_at", sa.Float(), nullable=True),
        sa.Column("reported_at", sa.Float(), nullable=True),
        sa.Column("done_at", sa.Float(), nullable=True),
        sa.Column("report", sa.Text(), nullable=False),
        sa.Column("active_seconds", sa.Float(), nullable=False),
        sa.Column("active_at", sa.Float(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.UniqueConstraint("study_id", "reader", "position"),
    )
    op.create_index("ix_reader_reads_study_id", "reader_reads", ["study_id"])
    op.create_index("ix_reader_reads_reader", "reader_reads", ["reader"])
    op.create_index("ix_reader_reads_job_id", "reader_reads", ["job_id"])
    op.create_table(
        "reader_answers",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("read_id", sa.Integer(), sa.ForeignKey("reader_reads.id"), nullable=False),
        sa.Column("item", sa.String(length=8), nullable=False),
        sa.Column("value", sa.Integer(), nullable=False),
        sa.UniqueConstraint("read_id", "item"),
    )
    op.create_index("ix_reader_answers_read_id", "reader_answers", ["read_id"])


def downgrade() -> None:
    for table in ("reader_answers", "reader_reads", "reader_cases", "reader_studies"):
        op.drop_table(table)
