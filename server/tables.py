"""The PostgreSQL schema (SQLAlchemy Core + GeoAlchemy2); Alembic migrations create it."""

import sqlalchemy as sa
from geoalchemy2 import Geometry
from sqlalchemy.dialects import postgresql as pg

metadata = sa.MetaData()

POINT = Geometry("POINT", srid=4326, spatial_index=False)

users = sa.Table(
    "users",
    metadata,
    sa.Column("user_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("phone", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
)

devices = sa.Table(
    "devices",
    metadata,
    sa.Column("device_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("user_id", pg.UUID(as_uuid=True), sa.ForeignKey("users.user_id"), nullable=False, index=True),
    # SHA-256 of the bearer token: tokens are 256 random bits, so a fast hash is enough.
    sa.Column("token_sha256", sa.LargeBinary(32), nullable=False, unique=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
)

# Months of fixes for a million users: append-only, BRIN on arrival time (which
# follows insertion order), B-tree for per-user reads, SP-GiST for area queries
# (a third of GiST's cost per insert for points).
pings = sa.Table(
    "pings",
    metadata,
    # (device, seq) is both the idempotency key and the only key: a surrogate id would cost
    # one more B-tree insert per fix and serve no query.
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
    # Null when plausible; otherwise the codes of the rules it failed.
    sa.Column("suspect", pg.ARRAY(sa.Text)),
    sa.Index("pings_received_at_brin", "received_at", postgresql_using="brin"),
    sa.Index("pings_user_ts_idx", "user_id", "device_ts"),
    sa.Index("pings_location_spgist", "location", postgresql_using="spgist"),
)

last_locations = sa.Table(
    "last_locations",
    metadata,
    sa.Column("user_id", pg.UUID(as_uuid=True), sa.ForeignKey("users.user_id"), primary_key=True),
    sa.Column("device_id", pg.UUID(as_uuid=True), nullable=False),
    sa.Column("device_ts", sa.DateTime(timezone=True), nullable=False),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("location", POINT, nullable=False),
    sa.Column("accuracy_m", sa.Float),
    sa.Column("speed_mps", sa.Float),
    sa.Column("heading_deg", sa.Float),
    sa.Column("battery_pct", sa.Float),
    # Rewritten by nearly every ping: HOT updates need page room and no index on what changes.
    # Areas of last locations are answered by the Redis geo index.
    postgresql_with={"fillfactor": 50},
)


def point(lat, lon):
    """The one way (lat, lon) becomes a PostGIS point: SRID 4326, x = longitude."""
    return sa.func.ST_SetSRID(sa.func.ST_MakePoint(lon, lat), 4326)
