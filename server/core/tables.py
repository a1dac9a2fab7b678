"""The PostgreSQL schema (SQLAlchemy Core + GeoAlchemy2); Alembic migrations create it."""

import sqlalchemy as sa
from geoalchemy2 import Geometry
from sqlalchemy.dialects import postgresql as pg

metadata = sa.MetaData()

POINT = Geometry("POINT", srid=4326, spatial_index=False)
LINE = Geometry("LINESTRING", srid=4326, spatial_index=False)

users = sa.Table(
    "users",
    metadata,
    sa.Column("user_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("phone", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    # Set by the erasure (`accounts.erasure`): the row stays as a tombstone, so that the alerts
    # kept as the law-enforcement record keep their subject; nothing else of the user remains.
    sa.Column("erased_at", sa.DateTime(timezone=True)),
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

# Months of fixes for a million users: append-only, read by user and device time (tracks,
# export, erasure) and by key (acked_seq, the recheck of a resent seq). No other index: each
# costs every ping an insert, and no query reads the history by area (last locations are in the
# Redis geo index) or by arrival time alone (migration 0012 dropped the SP-GiST and the BRIN).
# Partitioned by device time, one partition a day (pg_partman; server/positions/partitions.py),
# so that the history past its retention goes by dropping whole partitions.
pings = sa.Table(
    "pings",
    metadata,
    # (device, seq, device time) is both the idempotency key and the only key: a surrogate id
    # would cost one more B-tree insert per fix and serve no query. The partition key must be
    # in it; a retried ping repeats its device time, so a retry still stores nothing twice.
    sa.Column("device_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("user_id", pg.UUID(as_uuid=True), nullable=False),
    sa.Column("seq", sa.BigInteger, primary_key=True),
    sa.Column("device_ts", sa.DateTime(timezone=True), primary_key=True),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("location", POINT, nullable=False),
    sa.Column("accuracy_m", sa.Float),
    sa.Column("altitude_m", sa.Float),
    sa.Column("speed_mps", sa.Float),
    sa.Column("heading_deg", sa.Float),
    sa.Column("battery_pct", sa.Float),
    # Null when plausible; otherwise the codes of the rules it failed.
    sa.Column("suspect", pg.ARRAY(sa.Text)),
    sa.Index("pings_user_ts_idx", "user_id", "device_ts"),
    postgresql_partition_by="RANGE (device_ts)",
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


# --- Jurisdictions, staff and alerts (issue 3) ---

AREA = Geometry("MULTIPOLYGON", srid=4326, spatial_index=False)

precincts = sa.Table(
    "precincts",
    metadata,
    sa.Column("precinct_id", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("area", AREA, nullable=False),
    sa.Index("precincts_area_gist", "area", postgresql_using="gist"),
)

stations = sa.Table(
    "stations",
    metadata,
    sa.Column("station_id", sa.Text, primary_key=True),
    sa.Column("precinct_id", sa.Text, sa.ForeignKey("precincts.precinct_id", ondelete="CASCADE"), nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("location", POINT, nullable=False),
    sa.Index("stations_location_gist", "location", postgresql_using="gist"),
)

# Dispatchers (one precinct), the command centre (every precinct) and officers (phones of
# patrol officers: they report a position and an FCM token, and never open the console).
staff = sa.Table(
    "staff",
    metadata,
    sa.Column("staff_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("username", sa.Text, nullable=False, unique=True),
    sa.Column("password_hash", sa.Text, nullable=False),
    sa.Column("role", sa.Text, nullable=False),
    sa.Column("precinct_id", sa.Text, sa.ForeignKey("precincts.precinct_id")),
    sa.Column("fcm_token", sa.Text),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.CheckConstraint("role IN ('dispatcher', 'command', 'officer')", name="staff_role"),
    sa.CheckConstraint("(role = 'command') = (precinct_id IS NULL)", name="staff_precinct"),
)

staff_sessions = sa.Table(
    "staff_sessions",
    metadata,
    sa.Column("token_sha256", sa.LargeBinary(32), primary_key=True),
    sa.Column("staff_id", pg.UUID(as_uuid=True), sa.ForeignKey("staff.staff_id", ondelete="CASCADE"), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
)

# The user's PINs (argon2 hashes) and the count of wrong PINs since the last right one.
pins = sa.Table(
    "pins",
    metadata,
    sa.Column("user_id", pg.UUID(as_uuid=True), sa.ForeignKey("users.user_id"), primary_key=True),
    sa.Column("pin_hash", sa.Text, nullable=False),
    sa.Column("duress_pin_hash", sa.Text, nullable=False),
    sa.Column("failed_attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("locked_until", sa.DateTime(timezone=True)),
)

contacts = sa.Table(
    "contacts",
    metadata,
    sa.Column("user_id", pg.UUID(as_uuid=True), sa.ForeignKey("users.user_id"), primary_key=True),
    sa.Column("position", sa.Integer, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("phone", sa.Text, nullable=False),
)

push_tokens = sa.Table(
    "push_tokens",
    metadata,
    sa.Column("device_id", pg.UUID(as_uuid=True), sa.ForeignKey("devices.device_id"), primary_key=True),
    sa.Column("fcm_token", sa.Text, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
)

# The statuses of an alert that is not over: dispatchers still follow it.
ALERT_UNFINISHED = ("open", "acknowledged")

alerts = sa.Table(
    "alerts",
    metadata,
    sa.Column("alert_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("sos_id", pg.UUID(as_uuid=True), nullable=False),
    sa.Column("user_id", pg.UUID(as_uuid=True), sa.ForeignKey("users.user_id"), nullable=False),
    # What dispatchers see (open, acknowledged, resolved, cancelled) and what the phone was told:
    # they differ after a duress cancel, when the phone hears `cancelled` and the alert goes on.
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("phone_status", sa.Text, nullable=False),
    sa.Column("duress", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("location", Geometry("POINT", srid=4326, spatial_index=False, nullable=True)),
    sa.Column("accuracy_m", sa.Float),
    sa.Column("fix_ts", sa.DateTime(timezone=True)),
    # fix (from the SOS), suspect (from the SOS, annotated), last_known, unknown
    sa.Column("quality", sa.Text, nullable=False),
    sa.Column("suspect", pg.ARRAY(sa.Text)),
    sa.Column("precinct_id", sa.Text, sa.ForeignKey("precincts.precinct_id")),
    sa.Column("out_of_area", sa.Boolean, nullable=False, server_default=sa.false()),
    # Precincts whose dispatchers see it: its own, then its neighbours once escalated.
    sa.Column("visible_precincts", pg.ARRAY(sa.Text), nullable=False),
    sa.Column("note", sa.Text),
    sa.Column("trip", pg.JSONB),
    sa.Column("escalation_level", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_escalation_at", sa.DateTime(timezone=True)),
    # Set when the alert is raised, so every process sweeping it re-escalates on its schedule.
    sa.Column("escalate_again_after_s", sa.Float, nullable=False),
    sa.Column("acknowledged_by", sa.Text),
    sa.Column("resolved_by", sa.Text),
    sa.Column("outcome", sa.Text),
    # When it was resolved or cancelled (a duress cancel does not end it): the upper bound of the
    # track its dispatchers may see (DESIGN rule 8). Null while unfinished.
    sa.Column("ended_at", sa.DateTime(timezone=True)),
    # SOS of the user that joined this alert (sos_repeats) because the user already had the most
    # unfinished alerts allowed: one alert on the console with its count, not a queue buried.
    sa.Column("repeats", sa.Integer, nullable=False, server_default="0"),
    # The trip the user was on when the alert was raised: its context for the police (no FK: trips
    # are created after alerts in the schema; the trip names its alert).
    sa.Column("trip_id", pg.UUID(as_uuid=True)),
    # What raised it: the user's SOS, a trip's `are_you_safe` left unanswered (overdue), or the
    # duress PIN given to `safe` (duress). Dispatchers see it.
    sa.Column("reason", sa.Text, nullable=False, server_default="sos"),
    sa.CheckConstraint("reason IN ('sos', 'overdue', 'duress')", name="alerts_reason"),
    sa.UniqueConstraint("user_id", "sos_id", name="alerts_user_sos"),
    sa.Index("alerts_unfinished", "status", postgresql_where=sa.text("status IN ('open', 'acknowledged')")),
    # The cap on a user's unfinished alerts is checked by every SOS: a lookup of those rows only.
    sa.Index("alerts_user_unfinished", "user_id", postgresql_where=sa.text("status IN ('open', 'acknowledged')")),
    sa.Index("alerts_escalation_due", "next_escalation_at",
             postgresql_where=sa.text("status = 'open' AND next_escalation_at IS NOT NULL")),
)

# By the end of the span their tracks show (none yet: infinity): the alerts whose tracks reach into a
# partition about to be dropped, and those past their own retention (server/alerts/record.py).
sa.Index("alerts_track_end", sa.func.coalesce(alerts.c.ended_at, sa.literal_column("'infinity'::timestamptz")))

# The fixes shown as an alert's tracks (its own and its trip's), copied out of `pings` before
# the partition holding them is dropped, and kept as long as the alert (server/alerts/record.py).
alert_fixes = sa.Table(
    "alert_fixes",
    metadata,
    sa.Column("alert_id", pg.UUID(as_uuid=True), sa.ForeignKey("alerts.alert_id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("device_id", pg.UUID(as_uuid=True), nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("device_ts", sa.DateTime(timezone=True), nullable=False),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("location", POINT, nullable=False),
    sa.Column("accuracy_m", sa.Float),
    # Device time second: an alert's newest kept fixes are read backwards along it.
    sa.PrimaryKeyConstraint("alert_id", "device_ts", "device_id", "seq", name="alert_fixes_pkey"),
)

# An SOS with a new sos_id from a user at the cap of unfinished alerts: committed and acknowledged
# with the alert it joined (an SOS is never refused), stored once whatever the retries.
sos_repeats = sa.Table(
    "sos_repeats",
    metadata,
    sa.Column("user_id", pg.UUID(as_uuid=True), sa.ForeignKey("users.user_id"), primary_key=True),
    sa.Column("sos_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("alert_id", pg.UUID(as_uuid=True), sa.ForeignKey("alerts.alert_id"), nullable=False),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    # The SOS's own fix, when it had a usable one, and its annotations (as the alerts' columns).
    sa.Column("location", Geometry("POINT", srid=4326, spatial_index=False, nullable=True)),
    sa.Column("accuracy_m", sa.Float),
    sa.Column("fix_ts", sa.DateTime(timezone=True)),
    sa.Column("suspect", pg.ARRAY(sa.Text)),
    sa.Column("note", sa.Text),
)

alert_notes = sa.Table(
    "alert_notes",
    metadata,
    sa.Column("note_id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("alert_id", pg.UUID(as_uuid=True), sa.ForeignKey("alerts.alert_id"), nullable=False, index=True),
    sa.Column("author", sa.Text, nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
)

# Transactional outbox: a row per event and channel, written in the alert's own transaction
# (persist, then notify). Workers lease due rows, deliver, and mark them done; a lease that
# runs out (a crash) makes the row due again.
outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("event_id", pg.UUID(as_uuid=True), nullable=False),
    sa.Column("alert_id", pg.UUID(as_uuid=True), sa.ForeignKey("alerts.alert_id"), nullable=False),
    sa.Column("kind", sa.Text, nullable=False),  # opened, updated, escalated
    sa.Column("channel", sa.Text, nullable=False),  # console, push, cad
    sa.Column("target", sa.Text),  # the CAD endpoint
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("due_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("done_at", sa.DateTime(timezone=True)),
    sa.UniqueConstraint("event_id", "channel", "target", name="outbox_event_channel", postgresql_nulls_not_distinct=True),
    sa.Index("outbox_due", "channel", "due_at", postgresql_where=sa.text("done_at IS NULL")),
)

audit_reads = sa.Table(
    "audit_reads",
    metadata,
    sa.Column("audit_id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("staff_id", pg.UUID(as_uuid=True), sa.ForeignKey("staff.staff_id"), nullable=False),
    sa.Column("alert_id", pg.UUID(as_uuid=True), sa.ForeignKey("alerts.alert_id"), nullable=False),
    sa.Column("user_id", pg.UUID(as_uuid=True), nullable=False),
    sa.Column("read_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("context", sa.Text, nullable=False),  # snapshot, live
    sa.Index("audit_reads_read_at", "read_at"),
)

# Officers' last reported positions: the system of record for the Redis geo index of officers,
# which push searches near an SOS and which is rebuilt from here after Redis loses it.
officer_positions = sa.Table(
    "officer_positions",
    metadata,
    sa.Column("staff_id", pg.UUID(as_uuid=True), sa.ForeignKey("staff.staff_id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("location", POINT, nullable=False),
    sa.Column("reported_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
)


# The statuses of a trip that is not over: its timers run, its watchers follow it.
TRIP_UNFINISHED = ("active", "overdue", "alert")

# A taxi ride, a hike or a walk. At most one unfinished per user (a partial unique index).
# Its timers run from these columns, under row locks (`trips.timers`): `due_at` is when it
# becomes overdue, `answer_by` the deadline of the `are_you_safe` it was then asked.
trips = sa.Table(
    "trips",
    metadata,
    sa.Column("trip_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("user_id", pg.UUID(as_uuid=True), sa.ForeignKey("users.user_id"), nullable=False),
    sa.Column("kind", sa.Text, nullable=False),  # taxi, hike, walk
    sa.Column("status", sa.Text, nullable=False, server_default="active"),  # active, overdue, alert, arrived, ended
    sa.Column("plate", sa.Text),
    sa.Column("driver_name", sa.Text),
    sa.Column("vehicle", pg.JSONB),  # {"make", "colour"}
    sa.Column("destination", POINT),
    sa.Column("planned_route", LINE),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("eta", sa.DateTime(timezone=True)),
    sa.Column("expected_return", sa.DateTime(timezone=True)),
    sa.Column("due_at", sa.DateTime(timezone=True)),
    sa.Column("answer_by", sa.DateTime(timezone=True)),
    # The alert raised during this trip (an SOS, a duress PIN, no answer in time).
    sa.Column("alert_id", pg.UUID(as_uuid=True), sa.ForeignKey("alerts.alert_id")),
    # Since when the phone has stayed within the arrival radius of the destination.
    sa.Column("near_destination_since", sa.DateTime(timezone=True)),
    sa.Column("off_route", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("off_route_fixes", sa.Integer, nullable=False, server_default="0"),
    sa.Column("ended_at", sa.DateTime(timezone=True)),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.CheckConstraint("kind IN ('taxi', 'hike', 'walk')", name="trips_kind"),
    sa.CheckConstraint("status IN ('active', 'overdue', 'alert', 'arrived', 'ended')", name="trips_status"),
    sa.Index("trips_one_unfinished_per_user", "user_id", unique=True,
             postgresql_where=sa.text("status IN ('active', 'overdue', 'alert')")),
    sa.Index("trips_user_started", "user_id", "started_at"),
    sa.Index("trips_due", "due_at", postgresql_where=sa.text("status = 'active'")),
    sa.Index("trips_answer_by", "answer_by", postgresql_where=sa.text("status = 'overdue'")),
)

# A watcher's link to one trip. Only the SHA-256 of the token is kept (tokens are 256 random bits).
shares = sa.Table(
    "shares",
    metadata,
    sa.Column("share_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("trip_id", pg.UUID(as_uuid=True), sa.ForeignKey("trips.trip_id"), nullable=False, index=True),
    sa.Column("token_sha256", sa.LargeBinary(32), nullable=False, unique=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("revoked_at", sa.DateTime(timezone=True)),
)

# The trips' outbox: what is still to be delivered for a step of a trip's timers (the push to
# emergency contacts when a trip is overdue), committed with the step itself.
trip_events = sa.Table(
    "trip_events",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("trip_id", pg.UUID(as_uuid=True), sa.ForeignKey("trips.trip_id"), nullable=False),
    sa.Column("kind", sa.Text, nullable=False),  # overdue, ...
    sa.Column("channel", sa.Text, nullable=False),  # push
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("due_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("done_at", sa.DateTime(timezone=True)),
    sa.Index("trip_events_due", "channel", "due_at", postgresql_where=sa.text("done_at IS NULL")),
)

# --- Tracker apps (issue 11): phones without our app ---

# An external device a user registered (`POST /v1/devices`): Traccar Client's id (the OsmAnd
# protocol) stands for this device. Its fixes are stored under its own `device_id`, never the
# app's: each stream of seqs is its own, so the app's resume point (`history.acked_seq`) is
# never moved by a tracker's timestamp-derived seqs.
TRACKER_PROTOCOLS = ("osmand",)

trackers = sa.Table(
    "trackers",
    metadata,
    sa.Column("device_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("user_id", pg.UUID(as_uuid=True), sa.ForeignKey("users.user_id"), nullable=False, index=True),
    sa.Column("protocol", sa.Text, nullable=False),
    sa.Column("external_id", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.CheckConstraint("protocol IN ('osmand')", name="trackers_protocol"),
    sa.UniqueConstraint("protocol", "external_id", name="trackers_protocol_external_id"),
)

# The ids of removed trackers (as SHA-256), never registrable again: the phone that has one keeps
# posting, and must not reach whoever registers it next. Filled by a trigger on trackers (0011).
retired_trackers = sa.Table(
    "retired_trackers",
    metadata,
    sa.Column("protocol", sa.Text, primary_key=True),
    sa.Column("external_id_sha256", sa.LargeBinary(32), primary_key=True),
    sa.Column("retired_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
)
