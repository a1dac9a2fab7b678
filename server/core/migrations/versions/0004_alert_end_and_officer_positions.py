"""Alerts keep when they ended; officers' positions are stored in PostgreSQL

Revision ID: 0004
Revises: 0003
"""

import geoalchemy2
import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('alerts', sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True))
    # Alerts that ended before this revision: their last change is the closest record of the end
    # (a later note moved it, so the bound may be late by that much, never early).
    op.execute("UPDATE alerts SET ended_at = updated_at WHERE status IN ('resolved', 'cancelled')")
    op.create_table('officer_positions',
    sa.Column('staff_id', sa.UUID(), nullable=False),
    sa.Column('location', geoalchemy2.types.Geometry(geometry_type='POINT', srid=4326, dimension=2, spatial_index=False, from_text='ST_GeomFromEWKT', name='geometry', nullable=False), nullable=False),
    sa.Column('reported_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['staff_id'], ['staff.staff_id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('staff_id')
    )


def downgrade() -> None:
    op.drop_table('officer_positions')
    op.drop_column('alerts', 'ended_at')
