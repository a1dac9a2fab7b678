"""Why an alert was raised: the user's SOS, no answer to `are_you_safe` in time, or the duress
PIN given to `safe`

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('alerts', sa.Column('reason', sa.Text(), server_default='sos', nullable=False))
    op.create_check_constraint('alerts_reason', 'alerts', "reason IN ('sos', 'overdue', 'duress')")


def downgrade() -> None:
    op.drop_constraint('alerts_reason', 'alerts', type_='check')
    op.drop_column('alerts', 'reason')
