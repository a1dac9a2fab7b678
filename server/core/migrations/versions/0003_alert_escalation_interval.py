"""Each alert keeps the re-escalation interval it was raised with

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Alerts raised before this revision get the interval every process used by default then.
    op.add_column('alerts', sa.Column('escalate_again_after_s', sa.Float(), nullable=False, server_default='120'))
    op.alter_column('alerts', 'escalate_again_after_s', server_default=None)


def downgrade() -> None:
    op.drop_column('alerts', 'escalate_again_after_s')
