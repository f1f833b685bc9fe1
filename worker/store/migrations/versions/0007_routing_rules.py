"""routing rules: the rule that decided each study, its job's priority and destination set

Revision ID: 0007
Revises: 0006
"""
import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("studies", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rule", sa.String(length=255), nullable=False,
                                      server_default=""))
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rule", sa.String(length=64), nullable=False,
                                      server_default=""))
        batch_op.add_column(sa.Column("destination_set", sa.String(length=64),
                                      nullable=False, server_default=""))
        batch_op.add_column(sa.Column("destinations", sa.Text(), nullable=False,
                                      server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("destinations")
        batch_op.drop_column("destination_set")
        batch_op.drop_column("rule")
    with op.batch_alter_table("studies", schema=None) as batch_op:
        batch_op.drop_column("rule")
