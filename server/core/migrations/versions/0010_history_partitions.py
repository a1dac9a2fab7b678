"""The ping history partitioned by device time (daily, managed with pg_partman), and the alert
tracks kept apart from it (`alert_fixes`)

A running deployment can apply it: no lock that excludes the ingest is held for a time that
grows with the table. In order:

1. `CREATE UNIQUE INDEX CONCURRENTLY` of the new key (device_id, seq, device_ts) on today's table:
   no lock against reads or writes.
2. Fixes dated from `cutover` on (the start of the day after tomorrow, UTC) stop entering today's
   table: a row trigger holds them in `pings_held` (a few phones with a clock far ahead), those
   already there move to it, and a `CHECK (device_ts < cutover)` is added NOT VALID (a brief
   ACCESS EXCLUSIVE lock) and then validated (SHARE UPDATE EXCLUSIVE: the ingest goes on while
   the table is read). The index the retention job finds alerts by is built CONCURRENTLY too.
3. One short transaction: ACCESS EXCLUSIVE on today's table, which is renamed `pings_legacy`, its
   key swapped for the new unique index; a partitioned `pings` with the same indexes takes it as
   the partition FOR VALUES FROM (MINVALUE) TO (cutover), without a scan (the validated CHECK
   proves it) and without an index build (each of its indexes matches one of the parent's);
   pg_partman makes the daily partitions from `cutover` and the default partition; the held
   fixes are inserted into the new table. Catalogue work only.

`pings_legacy` then takes the fixes dated before the cutover, as today's table did, and is retired
whole, like a daily partition, once the cutover is older than the history retention
(server/positions/partitions.py).

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geometry
from sqlalchemy.dialects import postgresql as pg

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

POINT = Geometry("POINT", srid=4326, spatial_index=False)
PREMAKE_DAYS = 4


def _scalar(sql: str, **values):
    return op.get_bind().execute(sa.text(sql), values).scalar()


def _ensure_partman() -> None:
    if _scalar("SELECT count(*) FROM pg_extension WHERE extname = 'pg_partman'"):
        return
    if not _scalar("SELECT rolsuper FROM pg_roles WHERE rolname = current_user"):
        raise RuntimeError("pg_partman is not in this database: run ops/services.sh, or as a superuser "
                           "`psql -v role=<app role> -d <database> -f ops/extensions.sql`, then upgrade again")
    op.execute("CREATE SCHEMA IF NOT EXISTS partman")
    op.execute("CREATE EXTENSION pg_partman SCHEMA partman")


def upgrade() -> None:
    _ensure_partman()
    op.execute("SET LOCAL TIME ZONE 'UTC'")
    cutover = _scalar("SELECT date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' + interval '2 days'")
    bound = f"'{cutover.isoformat()}'::timestamptz"
    with op.get_context().autocommit_block():
        # Each step can run again after an attempt that stopped part way (a build left invalid is redone).
        if _scalar("SELECT NOT indisvalid FROM pg_index WHERE indexrelid = to_regclass('pings_legacy_key')"):
            op.execute("DROP INDEX CONCURRENTLY pings_legacy_key")
        op.execute("CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS pings_legacy_key ON pings (device_id, seq, device_ts)")
        op.execute("CREATE TABLE IF NOT EXISTS pings_held (LIKE pings INCLUDING DEFAULTS, "
                   "PRIMARY KEY (device_id, seq, device_ts))")
        op.execute("""
            CREATE OR REPLACE FUNCTION pings_hold() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                INSERT INTO pings_held VALUES (NEW.*) ON CONFLICT DO NOTHING;
                RETURN NULL;
            END $$""")
        op.execute("DROP TRIGGER IF EXISTS pings_hold ON pings")
        op.execute("ALTER TABLE pings DROP CONSTRAINT IF EXISTS pings_legacy_before")
        op.execute(f"CREATE TRIGGER pings_hold BEFORE INSERT ON pings FOR EACH ROW "
                   f"WHEN (NEW.device_ts >= {bound}) EXECUTE FUNCTION pings_hold()")
        op.execute(f"WITH moved AS (DELETE FROM pings WHERE device_ts >= {bound} RETURNING *) "
                   "INSERT INTO pings_held SELECT * FROM moved ON CONFLICT DO NOTHING")
        op.execute(f"ALTER TABLE pings ADD CONSTRAINT pings_legacy_before CHECK (device_ts < {bound}) NOT VALID")
        op.execute("ALTER TABLE pings VALIDATE CONSTRAINT pings_legacy_before")
        # Concurrently: an SOS inserts into alerts, and never waits on a build.
        op.execute("CREATE INDEX CONCURRENTLY IF NOT EXISTS alerts_track_end "
                   "ON alerts ((coalesce(ended_at, 'infinity'::timestamptz)))")
    op.execute("SET LOCAL TIME ZONE 'UTC'")
    op.execute("LOCK TABLE pings IN ACCESS EXCLUSIVE MODE")
    op.execute("DROP TRIGGER pings_hold ON pings")
    op.execute("DROP FUNCTION pings_hold()")
    op.execute("ALTER TABLE pings RENAME TO pings_legacy")
    op.execute("ALTER TABLE pings_legacy DROP CONSTRAINT pings_pkey")
    op.execute("ALTER TABLE pings_legacy ADD CONSTRAINT pings_legacy_pkey PRIMARY KEY USING INDEX pings_legacy_key")
    for index in ("received_at_brin", "user_ts_idx", "location_spgist"):
        op.execute(f"ALTER INDEX pings_{index} RENAME TO pings_legacy_{index}")
    _create_partitioned_table()
    op.execute(f"ALTER TABLE pings ATTACH PARTITION pings_legacy FOR VALUES FROM (MINVALUE) TO ({bound})")
    op.execute("ALTER TABLE pings_legacy DROP CONSTRAINT pings_legacy_before")
    op.execute(f"SELECT partman.create_parent('public.pings', 'device_ts', 'native', 'daily', "
               f"p_premake := {PREMAKE_DAYS}, p_start_partition := {bound}::text)")
    # Partitions are made from the clock, not from the newest fix: a phone dated years ahead must
    # not make partman fill the years in between (server/positions/partitions.py makes them).
    op.execute("UPDATE partman.part_config SET infinite_time_partitions = true, ignore_default_data = true "
               "WHERE parent_table = 'public.pings'")
    op.execute("INSERT INTO pings SELECT * FROM pings_held ON CONFLICT DO NOTHING")
    op.execute("DROP TABLE pings_held")
    _create_alert_fixes()


def _create_partitioned_table() -> None:
    op.create_table(
        "pings",
        sa.Column("device_id", pg.UUID(as_uuid=True), nullable=False),
        sa.Column("user_id", pg.UUID(as_uuid=True), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("device_ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("location", POINT, nullable=False),
        sa.Column("accuracy_m", sa.Float),
        sa.Column("altitude_m", sa.Float),
        sa.Column("speed_mps", sa.Float),
        sa.Column("heading_deg", sa.Float),
        sa.Column("battery_pct", sa.Float),
        sa.Column("suspect", pg.ARRAY(sa.Text)),
        sa.PrimaryKeyConstraint("device_id", "seq", "device_ts", name="pings_pkey"),
        postgresql_partition_by="RANGE (device_ts)",
    )
    op.create_index("pings_received_at_brin", "pings", ["received_at"], postgresql_using="brin")
    op.create_index("pings_user_ts_idx", "pings", ["user_id", "device_ts"])
    op.create_index("pings_location_spgist", "pings", ["location"], postgresql_using="spgist")


def _create_alert_fixes() -> None:
    op.create_table(
        "alert_fixes",
        sa.Column("alert_id", pg.UUID(as_uuid=True), sa.ForeignKey("alerts.alert_id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("device_id", pg.UUID(as_uuid=True), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("device_ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("location", POINT, nullable=False),
        sa.Column("accuracy_m", sa.Float),
        sa.PrimaryKeyConstraint("alert_id", "device_ts", "device_id", "seq", name="alert_fixes_pkey"),
    )


def downgrade() -> None:
    """Back to one table: a copy of the whole history under an exclusive lock (an outage as long
    as the copy), for an operator who must go back, not for a running deployment."""
    op.drop_index("alerts_track_end", table_name="alerts")
    op.drop_table("alert_fixes")
    op.execute("LOCK TABLE pings IN ACCESS EXCLUSIVE MODE")
    op.execute("CREATE TABLE pings_single (LIKE pings INCLUDING DEFAULTS)")
    op.execute("INSERT INTO pings_single SELECT DISTINCT ON (device_id, seq) * FROM pings "
               "ORDER BY device_id, seq, received_at")
    op.execute("DELETE FROM partman.part_config WHERE parent_table = 'public.pings'")
    op.execute("DROP TABLE pings CASCADE")
    op.execute("DROP TABLE IF EXISTS partman.template_public_pings")
    op.execute("ALTER TABLE pings_single RENAME TO pings")
    op.create_primary_key("pings_pkey", "pings", ["device_id", "seq"])
    op.create_index("pings_received_at_brin", "pings", ["received_at"], postgresql_using="brin")
    op.create_index("pings_user_ts_idx", "pings", ["user_id", "device_ts"])
    op.create_index("pings_location_spgist", "pings", ["location"], postgresql_using="spgist")
