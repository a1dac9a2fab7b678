"""Trips (taxi rides, hikes, walks) with their timers, watchers' share links, the trips' outbox,
and the trip an alert was raised during

Revision ID: 0006
Revises: 0005
"""

import geoalchemy2
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def _geometry(kind: str) -> geoalchemy2.types.Geometry:
    return geoalchemy2.types.Geometry(geometry_type=kind, srid=4326, dimension=2, spatial_index=False,
                                      from_text='ST_GeomFromEWKT', name='geometry')


def upgrade() -> None:
    op.add_column('alerts', sa.Column('trip_id', sa.UUID(), nullable=True))
    op.create_table('trips',
    sa.Column('trip_id', sa.UUID(), nullable=False),
    sa.Column('user_id', sa.UUID(), nullable=False),
    sa.Column('kind', sa.Text(), nullable=False),
    sa.Column('status', sa.Text(), server_default='active', nullable=False),
    sa.Column('plate', sa.Text(), nullable=True),
    sa.Column('driver_name', sa.Text(), nullable=True),
    sa.Column('vehicle', pg.JSONB(), nullable=True),
    sa.Column('destination', _geometry('POINT'), nullable=True),
    sa.Column('planned_route', _geometry('LINESTRING'), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('eta', sa.DateTime(timezone=True), nullable=True),
    sa.Column('expected_return', sa.DateTime(timezone=True), nullable=True),
    sa.Column('due_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('answer_by', sa.DateTime(timezone=True), nullable=True),
    sa.Column('alert_id', sa.UUID(), nullable=True),
    sa.Column('near_destination_since', sa.DateTime(timezone=True), nullable=True),
    sa.Column('off_route', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('off_route_fixes', sa.Integer(), server_default='0', nullable=False),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("kind IN ('taxi', 'hike', 'walk')", name='trips_kind'),
    sa.CheckConstraint("status IN ('active', 'overdue', 'alert', 'arrived', 'ended')", name='trips_status'),
    sa.ForeignKeyConstraint(['alert_id'], ['alerts.alert_id'], ),
    sa.ForeignKeyConstraint(['user_id'], ['users.user_id'], ),
    sa.PrimaryKeyConstraint('trip_id')
    )
    op.create_index('trips_one_unfinished_per_user', 'trips', ['user_id'], unique=True,
                    postgresql_where=sa.text("status IN ('active', 'overdue', 'alert')"))
    op.create_index('trips_user_started', 'trips', ['user_id', 'started_at'])
    op.create_index('trips_due', 'trips', ['due_at'], postgresql_where=sa.text("status = 'active'"))
    op.create_index('trips_answer_by', 'trips', ['answer_by'], postgresql_where=sa.text("status = 'overdue'"))
    op.create_table('shares',
    sa.Column('share_id', sa.UUID(), nullable=False),
    sa.Column('trip_id', sa.UUID(), nullable=False),
    sa.Column('token_sha256', sa.LargeBinary(length=32), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['trip_id'], ['trips.trip_id'], ),
    sa.PrimaryKeyConstraint('share_id'),
    sa.UniqueConstraint('token_sha256')
    )
    op.create_index('ix_shares_trip_id', 'shares', ['trip_id'])
    op.create_table('trip_events',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('trip_id', sa.UUID(), nullable=False),
    sa.Column('kind', sa.Text(), nullable=False),
    sa.Column('channel', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('due_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('attempts', sa.Integer(), server_default='0', nullable=False),
    sa.Column('done_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['trip_id'], ['trips.trip_id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('trip_events_due', 'trip_events', ['channel', 'due_at'],
                    postgresql_where=sa.text('done_at IS NULL'))


def downgrade() -> None:
    op.drop_table('trip_events')
    op.drop_table('shares')
    op.drop_table('trips')
    op.drop_column('alerts', 'trip_id')
