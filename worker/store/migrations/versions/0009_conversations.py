"""conversations: every turn of a study's chat, and follow-up questions

Revision ID: 0009
Revises: 0008
"""
import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "conversation_turns",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), sa.ForeignKey("jobs.id"), nullable=False),
        sa.Column("job_version", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("image_ref", sa.String(length=128), nullable=False, server_default=""),
        sa.Column("question_id", sa.Integer(), nullable=True),
        sa.Column("generated_tokens", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("job_id", "job_version", "seq"),
    )
    with op.batch_alter_table("conversation_turns", schema=None) as batch_op:
        batch_op.create_index("ix_conversation_turns_job_id", ["job_id"], unique=False)
    op.create_table(
        "questions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), sa.ForeignKey("jobs.id"), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("asked_by", sa.String(length=128), nullable=False, server_default=""),
        sa.Column("asked_at", sa.Float(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False, server_default="waiting"),
        sa.Column("route", sa.String(length=16), nullable=False, server_default=""),
        sa.Column("holder", sa.String(length=128), nullable=False, server_default=""),
        sa.Column("held_since", sa.Float(), nullable=False, server_default="0"),
        sa.Column("answered_at", sa.Float(), nullable=True),
        sa.Column("job_version", sa.Integer(), nullable=True),
        sa.Column("reply_text", sa.Text(), nullable=False, server_default=""),
        sa.Column("reasoning", sa.Text(), nullable=False, server_default=""),
        sa.Column("answer", sa.Text(), nullable=False, server_default=""),
        sa.Column("status", sa.String(length=16), nullable=False, server_default=""),
        sa.Column("generated_tokens", sa.Integer(), nullable=True),
        sa.Column("reused_turn", sa.Integer(), nullable=True),
        sa.Column("worker", sa.String(length=128), nullable=False, server_default=""),
        sa.Column("error", sa.Text(), nullable=False, server_default=""),
        sa.Column("addendum", sa.String(length=16), nullable=False, server_default=""),
        sa.Column("addendum_sop_instance_uid", sa.String(length=64), nullable=False,
                  server_default=""),
        sa.Column("addendum_path", sa.Text(), nullable=False, server_default=""),
        sa.Column("addendum_detail", sa.Text(), nullable=False, server_default=""),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("questions", schema=None) as batch_op:
        batch_op.create_index("ix_questions_job_id", ["job_id"], unique=False)
        batch_op.create_index("ix_questions_state", ["state"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("questions", schema=None) as batch_op:
        batch_op.drop_index("ix_questions_state")
        batch_op.drop_index("ix_questions_job_id")
    op.drop_table("questions")
    with op.batch_alter_table("conversation_turns", schema=None) as batch_op:
        batch_op.drop_index("ix_conversation_turns_job_id")
    op.drop_table("conversation_turns")
