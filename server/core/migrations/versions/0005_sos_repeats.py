"""A user's SOS beyond the cap of unfinished alerts join their newest alert, counted there

Revision ID: 0005
Revises: 0004
"""

import geoalchemy2
import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('alerts', sa.Column('repeats', sa.Integer(), nullable=False, server_default='0'))
    op.create_index('alerts_user_unfinished', 'alerts', ['user_id'], unique=False,
                    postgresql_where=sa.text("status IN ('open', 'acknowledged')"))
    op.create_table('sos_repeats',
    sa.Column('user_id', sa.UUID(), nullable=False),
    sa.Column('sos_id', sa.UUID(), nullable=False),
    sa.Column('alert_id', sa.UUID(), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('location', geoalchemy2.types.Geometry(geometry_type='POINT', srid=4326, dimension=2, spatial_index=False, from_text='ST_GeomFromEWKT', name='geometry'), nullable=True),
    sa.Column('accuracy_m', sa.Float(), nullable=True),
    sa.Column('fix_ts', sa.DateTime(timezone=True), nullable=True),
    sa.Column('suspect', sa.ARRAY(sa.Text()), nullable=True),
    sa.Column('note', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['alert_id'], ['alerts.alert_id'], ),
    sa.ForeignKeyConstraint(['user_id'], ['users.user_id'], ),
    sa.PrimaryKeyConstraint('user_id', 'sos_id')
    )


def downgrade() -> None:
    op.drop_table('sos_repeats')
    op.drop_index('alerts_user_unfinished', table_name='alerts',
                  postgresql_where=sa.text("status IN ('open', 'acknowledged')"))
    op.drop_column('alerts', 'repeats')
