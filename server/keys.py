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

# Pub/sub channel of live alert events between server processes (fan-out to consoles).
EVENTS_CHANNEL = PREFIX + "events"

# Geo index of officers' last reported positions; member = staff id.
OFFICERS_GEO = PREFIX + "geo:officers"
