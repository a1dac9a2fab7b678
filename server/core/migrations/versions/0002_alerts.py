"""Jurisdictions, staff, alerts, outbox, audit

Revision ID: 0002
Revises: 0001
"""

import geoalchemy2
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql
revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('precincts',
    sa.Column('precinct_id', sa.Text(), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('area', geoalchemy2.types.Geometry(geometry_type='MULTIPOLYGON', srid=4326, dimension=2, spatial_index=False, from_text='ST_GeomFromEWKT', name='geometry', nullable=False), nullable=False),
    sa.PrimaryKeyConstraint('precinct_id')
    )
    op.create_index('precincts_area_gist', 'precincts', ['area'], unique=False, postgresql_using='gist')
    op.create_table('alerts',
    sa.Column('alert_id', sa.UUID(), nullable=False),
    sa.Column('sos_id', sa.UUID(), nullable=False),
    sa.Column('user_id', sa.UUID(), nullable=False),
    sa.Column('status', sa.Text(), nullable=False),
    sa.Column('phone_status', sa.Text(), nullable=False),
    sa.Column('duress', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('opened_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('location', geoalchemy2.types.Geometry(geometry_type='POINT', srid=4326, dimension=2, spatial_index=False, from_text='ST_GeomFromEWKT', name='geometry', nullable=True), nullable=True),
    sa.Column('accuracy_m', sa.Float(), nullable=True),
    sa.Column('fix_ts', sa.DateTime(timezone=True), nullable=True),
    sa.Column('quality', sa.Text(), nullable=False),
    sa.Column('suspect', postgresql.ARRAY(sa.Text()), nullable=True),
    sa.Column('precinct_id', sa.Text(), nullable=True),
    sa.Column('out_of_area', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('visible_precincts', postgresql.ARRAY(sa.Text()), nullable=False),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('trip', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('escalation_level', sa.Integer(), server_default='0', nullable=False),
    sa.Column('next_escalation_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('acknowledged_by', sa.Text(), nullable=True),
    sa.Column('resolved_by', sa.Text(), nullable=True),
    sa.Column('outcome', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['precinct_id'], ['precincts.precinct_id'], ),
    sa.ForeignKeyConstraint(['user_id'], ['users.user_id'], ),
    sa.PrimaryKeyConstraint('alert_id'),
    sa.UniqueConstraint('user_id', 'sos_id', name='alerts_user_sos')
    )
    op.create_index('alerts_escalation_due', 'alerts', ['next_escalation_at'], unique=False, postgresql_where=sa.text("status = 'open' AND next_escalation_at IS NOT NULL"))
    op.create_index('alerts_unfinished', 'alerts', ['status'], unique=False, postgresql_where=sa.text("status IN ('open', 'acknowledged')"))
    op.create_table('contacts',
    sa.Column('user_id', sa.UUID(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('phone', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.user_id'], ),
    sa.PrimaryKeyConstraint('user_id', 'position')
    )
    op.create_table('pins',
    sa.Column('user_id', sa.UUID(), nullable=False),
    sa.Column('pin_hash', sa.Text(), nullable=False),
    sa.Column('duress_pin_hash', sa.Text(), nullable=False),
    sa.Column('failed_attempts', sa.Integer(), server_default='0', nullable=False),
    sa.Column('locked_until', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.user_id'], ),
    sa.PrimaryKeyConstraint('user_id')
    )
    op.create_table('staff',
    sa.Column('staff_id', sa.UUID(), nullable=False),
    sa.Column('username', sa.Text(), nullable=False),
    sa.Column('password_hash', sa.Text(), nullable=False),
    sa.Column('role', sa.Text(), nullable=False),
    sa.Column('precinct_id', sa.Text(), nullable=True),
    sa.Column('fcm_token', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("(role = 'command') = (precinct_id IS NULL)", name='staff_precinct'),
    sa.CheckConstraint("role IN ('dispatcher', 'command', 'officer')", name='staff_role'),
    sa.ForeignKeyConstraint(['precinct_id'], ['precincts.precinct_id'], ),
    sa.PrimaryKeyConstraint('staff_id'),
    sa.UniqueConstraint('username')
    )
    op.create_table('stations',
    sa.Column('station_id', sa.Text(), nullable=False),
    sa.Column('precinct_id', sa.Text(), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('location', geoalchemy2.types.Geometry(geometry_type='POINT', srid=4326, dimension=2, spatial_index=False, from_text='ST_GeomFromEWKT', name='geometry', nullable=False), nullable=False),
    sa.ForeignKeyConstraint(['precinct_id'], ['precincts.precinct_id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('station_id')
    )
    op.create_index('stations_location_gist', 'stations', ['location'], unique=False, postgresql_using='gist')
    op.create_table('alert_notes',
    sa.Column('note_id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('alert_id', sa.UUID(), nullable=False),
    sa.Column('author', sa.Text(), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['alert_id'], ['alerts.alert_id'], ),
    sa.PrimaryKeyConstraint('note_id')
    )
    op.create_index(op.f('ix_alert_notes_alert_id'), 'alert_notes', ['alert_id'], unique=False)
    op.create_table('audit_reads',
    sa.Column('audit_id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('staff_id', sa.UUID(), nullable=False),
    sa.Column('alert_id', sa.UUID(), nullable=False),
    sa.Column('user_id', sa.UUID(), nullable=False),
    sa.Column('read_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('context', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['alert_id'], ['alerts.alert_id'], ),
    sa.ForeignKeyConstraint(['staff_id'], ['staff.staff_id'], ),
    sa.PrimaryKeyConstraint('audit_id')
    )
    op.create_index('audit_reads_read_at', 'audit_reads', ['read_at'], unique=False)
    op.create_table('outbox',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('event_id', sa.UUID(), nullable=False),
    sa.Column('alert_id', sa.UUID(), nullable=False),
    sa.Column('kind', sa.Text(), nullable=False),
    sa.Column('channel', sa.Text(), nullable=False),
    sa.Column('target', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('due_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('attempts', sa.Integer(), server_default='0', nullable=False),
    sa.Column('done_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['alert_id'], ['alerts.alert_id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('event_id', 'channel', 'target', name='outbox_event_channel', postgresql_nulls_not_distinct=True)
    )
    op.create_index('outbox_due', 'outbox', ['channel', 'due_at'], unique=False, postgresql_where=sa.text('done_at IS NULL'))
    op.create_table('push_tokens',
    sa.Column('device_id', sa.UUID(), nullable=False),
    sa.Column('fcm_token', sa.Text(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['device_id'], ['devices.device_id'], ),
    sa.PrimaryKeyConstraint('device_id')
    )
    op.create_table('staff_sessions',
    sa.Column('token_sha256', sa.LargeBinary(length=32), nullable=False),
    sa.Column('staff_id', sa.UUID(), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['staff_id'], ['staff.staff_id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('token_sha256')
    )


def downgrade() -> None:
    op.drop_table('staff_sessions')
    op.drop_table('push_tokens')
    op.drop_index('outbox_due', table_name='outbox', postgresql_where=sa.text('done_at IS NULL'))
    op.drop_table('outbox')
    op.drop_index('audit_reads_read_at', table_name='audit_reads')
    op.drop_table('audit_reads')
    op.drop_index(op.f('ix_alert_notes_alert_id'), table_name='alert_notes')
    op.drop_table('alert_notes')
    op.drop_index('stations_location_gist', table_name='stations', postgresql_using='gist')
    op.drop_table('stations')
    op.drop_table('staff')
    op.drop_table('pins')
    op.drop_table('contacts')
    op.drop_index('alerts_unfinished', table_name='alerts', postgresql_where=sa.text("status IN ('open', 'acknowledged')"))
    op.drop_index('alerts_escalation_due', table_name='alerts', postgresql_where=sa.text("status = 'open' AND next_escalation_at IS NOT NULL"))
    op.drop_table('alerts')
    op.drop_index('precincts_area_gist', table_name='precincts', postgresql_using='gist')
    op.drop_table('precincts')
