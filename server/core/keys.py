"""Every Redis key Guardian uses, in one place."""

import uuid

PREFIX = "guardian:"

# Geo index (GEOADD) of every user's last plausible location; member = user id.
LAST_LOCATIONS_GEO = PREFIX + "geo:last"

# Set once the hot state has been rebuilt from PostgreSQL; its absence after a
# wipe is what tells the next start-up to rebuild.
HOT_STATE_READY = PREFIX + "hot:ready"


def last_location(user_id: uuid.UUID | str) -> str:
    """Hash with lat, lon, acc, ts (RFC 3339) of the user's last plausible fix."""
    return f"{PREFIX}loc:{user_id}"

def events_channel(db: int) -> str:
    """Pub/sub channel of live alert events between server processes (fan-out to consoles).

    Channels, unlike keys, are shared by every database of a Redis server: the channel is
    named after the database, so deployments sharing a Redis server on different indexes
    (a test run beside `make run`) never hear each other's alerts (DESIGN rule 8)."""
    return f"{PREFIX}events:{db}"

# Geo index of officers' last reported positions; member = staff id.
OFFICERS_GEO = PREFIX + "geo:officers"
