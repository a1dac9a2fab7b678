"""Users, devices, the ping history and last locations.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geometry
from sqlalchemy.dialects import postgresql as pg

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

POINT = Geometry("POINT", srid=4326, spatial_index=False)


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS postgis")
    op.create_table(
        "users",
        sa.Column("user_id", pg.UUID(as_uuid=True), primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("phone", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.create_table(
        "devices",
        sa.Column("device_id", pg.UUID(as_uuid=True), primary_key=True),
        sa.Column("user_id", pg.UUID(as_uuid=True), sa.ForeignKey("users.user_id"), nullable=False),
        sa.Column("token_sha256", sa.LargeBinary(32), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.create_index("ix_devices_user_id", "devices", ["user_id"])
    op.create_table(
        "pings",
        # (device, seq) is both the idempotency key and the only key.
        sa.Column("device_id", pg.UUID(as_uuid=True), primary_key=True),
        sa.Column("user_id", pg.UUID(as_uuid=True), nullable=False),
        sa.Column("seq", sa.BigInteger, primary_key=True),
        sa.Column("device_ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("location", POINT, nullable=False),
        sa.Column("accuracy_m", sa.Float),
        sa.Column("altitude_m", sa.Float),
        sa.Column("speed_mps", sa.Float),
        sa.Column("heading_deg", sa.Float),
        sa.Column("battery_pct", sa.Float),
        sa.Column("suspect", pg.ARRAY(sa.Text)),
        )
    op.create_index("pings_received_at_brin", "pings", ["received_at"], postgresql_using="brin")
    op.create_index("pings_user_ts_idx", "pings", ["user_id", "device_ts"])
    # SP-GiST, not GiST: it serves the same bounding-box queries (&&, ST_DWithin) and
    # costs a third of GiST's insert time per fix on the ingest path (measured on PostGIS 3).
    op.create_index("pings_location_spgist", "pings", ["location"], postgresql_using="spgist")
    op.create_table(
        "last_locations",
        sa.Column("user_id", pg.UUID(as_uuid=True), sa.ForeignKey("users.user_id"), primary_key=True),
        sa.Column("device_id", pg.UUID(as_uuid=True), nullable=False),
        sa.Column("device_ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("location", POINT, nullable=False),
        sa.Column("accuracy_m", sa.Float),
        sa.Column("speed_mps", sa.Float),
        sa.Column("heading_deg", sa.Float),
        sa.Column("battery_pct", sa.Float),
        # Rewritten by nearly every ping: room on the page and no index on the changing
        # columns make each rewrite a HOT update. Areas of last locations are Redis's job.
        postgresql_with={"fillfactor": 50},
    )


def downgrade() -> None:
    op.drop_table("last_locations")
    op.drop_table("pings")
    op.drop_table("devices")
    op.drop_table("users")
