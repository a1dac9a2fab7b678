"""External tracker devices (Traccar Client over the OsmAnd protocol) registered by their users

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('trackers',
    sa.Column('device_id', sa.UUID(), nullable=False),
    sa.Column('user_id', sa.UUID(), nullable=False),
    sa.Column('protocol', sa.Text(), nullable=False),
    sa.Column('external_id', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("protocol IN ('osmand')", name='trackers_protocol'),
    sa.ForeignKeyConstraint(['user_id'], ['users.user_id'], ),
    sa.PrimaryKeyConstraint('device_id'),
    sa.UniqueConstraint('protocol', 'external_id', name='trackers_protocol_external_id')
    )
    op.create_index(op.f('ix_trackers_user_id'), 'trackers', ['user_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_trackers_user_id'), table_name='trackers')
    op.drop_table('trackers')
