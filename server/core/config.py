"""Settings, read from GUARDIAN_* environment variables when the app is built (never at import)."""

from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from geo import rules

DEV_DATABASE_URL = "postgresql+asyncpg://guardian:guardian@127.0.0.1:5432/guardian"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GUARDIAN_", extra="ignore")

    environment: Literal["development", "production"] = "development"
    database_url: str = ""
    redis_url: str = "redis://127.0.0.1:6379/0"
    host: str = "127.0.0.1"
    port: int = 8000
    console_origins: list[str] = []
    # Guardian's own log lines from this level (DEBUG, INFO, WARNING, ...); libraries' from WARNING
    # (server/core/logs.py).
    log_level: str = "INFO"
    # What this process serves (`server.core.roles`): `all` in one process, or the `phones` and
    # `alerts` processes of the production layout behind the proxy (README, ops/proxy.sh).
    role: Literal["all", "phones", "alerts"] = "all"
    # Processes of the phones role serving one port (SO_REUSEPORT); the other roles run one.
    workers: int = Field(1, ge=1, le=64)
    # The phones role lowers its CPU priority by this much (`os.nice`), so the alerts process on
    # the same host runs first whenever both want a core, without root.
    phones_nice: int = Field(5, ge=0, le=19)

    # Group commit of pings: a flush when this many rows wait, or this long after the first.
    # A full queue refuses ping frames (`rate_limited`): it bounds the queueing delay, about
    # ingest_queue_rows / the committed rate (0.5 s at 20,000 pings/s). Full only for a device
    # holding ingest_device_share_rows pings not yet acked: the rest queue on, up to twice
    # ingest_queue_rows (server/phones/ingest.py), so a few greedy devices cannot shed everyone.
    flush_max_rows: int = 5000
    flush_interval_ms: float = 5.0
    ingest_queue_rows: int = 10_000
    ingest_device_share_rows: int = 100
    db_pool_size: int = 10
    alert_pool_size: int = 10

    # The connection gate (server/core/gate.py): a request (headers and body) must arrive whole within
    # request_timeout_s; at max_connections (0: the descriptor limit less reserved_fds) the oldest
    # connections without a whole request are closed to make room for new ones; one client
    # address holds at most max_pending_per_address of those.
    request_timeout_s: float = 10.0
    max_connections: int = 0
    reserved_fds: int = 256
    max_pending_per_address: int = 256
    hello_timeout_s: float = 5.0
    max_frame_bytes: int = 64 * 1024
    # `POST /v1/trips` with a planned route file (GPX or GeoJSON, at most 5 MiB) and its multipart framing.
    max_upload_bytes: int = 6 * 1024 * 1024
    max_batch_pings: int = 1000
    keepalive_interval_s: float = 20.0
    keepalive_timeout_s: float = 20.0
    # Per-device token bucket over pings (a batch counts each of its pings).
    rate_pings_per_s: float = 100.0
    rate_burst_pings: int = 3000
    # Phone socket connects per device token, a token bucket checked before any database work:
    # a reconnect storm on one token is closed with 1013 instead of slowing everyone's acks.
    phone_connect_burst: int = 10
    phone_connects_per_s: float = 0.5
    # A socket that sends this many refused frames in a row is closed with 1008.
    max_consecutive_errors: int = 50
    # Registrations (`POST /v1/users`) per client address, a token bucket: `register_burst` at
    # once, then `register_per_hour`. The address is the socket's peer, or, when the peer is one
    # of `forwarded_allow_ips` (the reverse proxy in front), the nearest address that proxy puts
    # in X-Forwarded-For; an IPv6 client counts by its /64. Generous for carrier-grade NAT (many
    # phones behind one address register once each), far below a script's thousand a second.
    register_burst: int = 20
    register_per_hour: float = 120.0
    forwarded_allow_ips: list[str] = ["127.0.0.1"]
    # Console logins, token buckets per client address (as for registrations) and per username
    # given, whether or not it exists: each attempt verifies an argon2 hash (tens of ms of a
    # core), so unbounded guessing both tries passwords and starves the phones' event loop.
    # A dispatcher logs in once a shift; an office behind one address logs in a few at once.
    login_address_burst: int = 10
    login_address_per_minute: float = 10.0
    login_username_burst: int = 5
    login_username_per_minute: float = 2.0

    # Consoles and alerts.
    console_session_ttl_s: float = 12 * 3600.0
    console_queue_frames: int = 1000
    alert_track_points: int = 200
    # A user with this many unfinished alerts (open or acknowledged) who sends an SOS with a new
    # sos_id still gets it committed and acknowledged, joined to their newest unfinished alert
    # (counted there as a repeat) rather than opening another: one phone cannot bury every other
    # user's alert in its precinct's queue.
    max_unfinished_alerts_per_user: int = Field(default=3, ge=1)
    # While an alert is open the phone is asked to report this often.
    sos_report_interval_s: float = 1.0
    # Not acknowledged after escalate_after_s: re-sent and escalated; again every escalate_again_after_s
    # (both kept with each alert when it is raised).
    escalate_after_s: float = 60.0
    escalate_again_after_s: float = 120.0
    sweep_interval_s: float = 1.0
    # Trips (issue 10). A ride past its ETA plus the grace, or a hike past its expected return, is
    # overdue: the phone is asked `are_you_safe` and has trip_answer_s to answer `safe` with its PIN
    # before a police alert is raised. `safe` without `extend_s` extends the trip by the grace.
    trip_grace_s: float = 600.0
    trip_answer_s: float = 600.0
    trip_max_extend_s: float = 24 * 3600.0
    # A ride ends by itself once the phone stays this close to the destination this long.
    trip_arrival_radius_m: float = 100.0
    trip_arrival_dwell_s: float = 60.0
    # A hiker this far from the planned route for this many consecutive plausible fixes is off route.
    trip_off_route_m: float = 200.0
    trip_off_route_fixes: int = 3
    # Share links: by default valid until the trip's end plus share_after_end_s, never past share_max_s.
    share_after_end_s: float = 3600.0
    share_max_s: float = 24 * 3600.0
    # Retention (server/alerts/retention.py). Location history is dropped a day's partition at a
    # time once all of it is older than history_retention_days (so it is kept that long, and at
    # most a day more). An alert, with the fixes of its tracks and its notes, is the record for
    # the police: kept alert_retention_days after it ended (ten years: the order of the limitation
    # periods of the offences an SOS reports; set it to what the law of the deployment says).
    history_retention_days: int = Field(default=30, ge=1)
    alert_retention_days: int = Field(default=3650, ge=1)
    retention_interval_s: float = 3600.0
    outbox_lease_s: float = 30.0
    # The outbox workers look for due rows this often even when nobody woke them (rows left by
    # a crash, an outage, or a wake-up lost on its way from another process).
    outbox_poll_interval_s: float = Field(1.0, gt=0)
    pin_max_failures: int = 5
    pin_lockout_s: float = 300.0
    # Tracker apps (issue 11): an OsmAnd device id is its only credential, so `POST /v1/devices`
    # refuses ids shorter than this (Traccar Client lets its user type a long random one).
    osmand_min_id_length: int = Field(default=16, ge=1)
    tile_url: str | None = None  # optional basemap tiles for the console; the outlines need none

    # Push (FCM through firebase-admin). Off unless a project is configured.
    fcm_project_id: str = ""
    fcm_credentials_file: str | None = None
    fcm_endpoint: str | None = None  # an FCM v1 compatible server instead of Google's (tests)
    fcm_access_token: str | None = None  # only with fcm_endpoint
    fcm_timeout_s: float = 5.0
    officer_radius_m: float = 3000.0

    # The CAD webhook (NENA EIDO JSON), signed with HMAC-SHA256.
    cad_endpoints: list[str] = []
    cad_secret: str = ""
    cad_timeout_s: float = 5.0
    cad_agency_id: str = "police.guardian.invalid"
    issuing_element: str = "guardian.invalid"

    max_speed_mps: float = 85.0
    max_future_s: float = 300.0
    max_fix_age_s: float = 7 * 86_400.0
    max_accuracy_m: float = 5_000.0

    @model_validator(mode="after")
    def _defaults_only_in_development(self) -> "Settings":
        if not self.database_url:
            if self.environment == "production":
                raise ValueError("GUARDIAN_DATABASE_URL must be set in production")
            self.database_url = DEV_DATABASE_URL
        if self.cad_endpoints and len(self.cad_secret) < 16:
            raise ValueError("GUARDIAN_CAD_SECRET (16 characters or more) must be set with GUARDIAN_CAD_ENDPOINTS")
        timeouts_s = [self.cad_timeout_s] * bool(self.cad_endpoints) + [self.fcm_timeout_s] * bool(self.fcm_project_id)
        if max(timeouts_s, default=0) > self.outbox_lease_s / 3:
            # A post must end well inside its lease (renewed every third of it), or another
            # worker could lease the row and post it again meanwhile.
            raise ValueError("GUARDIAN_CAD_TIMEOUT_S and GUARDIAN_FCM_TIMEOUT_S must be at most a third of "
                             "GUARDIAN_OUTBOX_LEASE_S")
        if self.fcm_access_token and not self.fcm_endpoint:
            raise ValueError("GUARDIAN_FCM_ACCESS_TOKEN is only for GUARDIAN_FCM_ENDPOINT")
        if self.workers > 1 and self.role != "phones":
            # The outbox workers and sweepers take advisory locks and row locks, so two would be
            # safe, but the consoles' hub, the rush and the audit batches are per process: one
            # alerts process, restarted by its supervisor, is the simpler thing to reason about.
            raise ValueError("GUARDIAN_WORKERS above 1 is for GUARDIAN_ROLE=phones only")
        if not self.console_origins:
            self.console_origins = [f"http://{self.host}:{self.port}"]
        return self

    @property
    def limits(self) -> rules.Limits:
        return rules.Limits(
            max_speed_mps=self.max_speed_mps,
            max_future_s=self.max_future_s,
            max_age_s=self.max_fix_age_s,
            max_accuracy_m=self.max_accuracy_m,
        )
