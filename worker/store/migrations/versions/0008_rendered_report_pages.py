"""rendered report pages: the page objects delivered beside the SR

Issue 24: a job whose destinations ask for the rendered draft (``/sr+page``, ``/page``)
keeps its Secondary Capture pages in the outbox, one path a line in ``jobs.page_paths``
(their UIDs derive from the SR's, so only the files need finding again at delivery).

Revision ID: 0008
Revises: 0007
"""
import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("page_paths", sa.Text(), nullable=False,
                                      server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("page_paths")
