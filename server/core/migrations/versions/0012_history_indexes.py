"""The history keeps only the indexes a query reads: its key (device_id, seq, device_ts) and
(user_id, device_ts); the SP-GiST on `location` and the BRIN on `received_at` go

No query reads `pings` by area: the spatial questions are on last locations (the Redis geo
index) and on precincts; alert tracks, the console's tracks, `/v1/me/track`, the export, the
trip share and the erasure all read one user's fixes by (user_id, device_ts); `acked_seq` and
the recheck of a resent seq read the key; retention drops whole partitions. `received_at` is only
ever a filter beside (user_id, device_ts). Each index costs every ping an insert (issue 12: the
SP-GiST and the BRIN were a tenth of PostgreSQL's CPU per stored ping, `python -m load storecost`).

A running deployment can apply it. `DROP INDEX CONCURRENTLY` is refused on a partitioned index,
and a partition's index attached to it cannot be dropped alone; a plain `DROP INDEX` of the
parent's index drops every partition's at once (catalogue work and unlinking files, no scan),
under an ACCESS EXCLUSIVE lock on `pings`. It waits at most LOCK_TIMEOUT for that lock, so a
flush in progress does not queue every later flush behind it for long, and is tried again.
Partitions made afterwards (pg_partman, server/positions/partitions.py) take the parent's
indexes, so they never have these; pg_partman's template table holds no index.

Revision ID: 0012
Revises: 0011
"""

import random
import time

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

DROPPED = ("pings_location_spgist", "pings_received_at_brin")
LOCK_TIMEOUT = "200ms"
ATTEMPTS = 150
LOCK_NOT_AVAILABLE = "55P03"


def _drop_waiting_briefly(name: str) -> None:
    bind = op.get_bind()
    for attempt in range(ATTEMPTS):
        try:
            bind.execute(sa.text(f"SET lock_timeout = '{LOCK_TIMEOUT}'"))
            bind.execute(sa.text(f"DROP INDEX IF EXISTS {name}"))
            return
        except sa.exc.DBAPIError as error:
            code = getattr(error.orig, "sqlstate", None) or getattr(error.orig.__cause__, "sqlstate", None)
            if code != LOCK_NOT_AVAILABLE or attempt == ATTEMPTS - 1:
                raise
            time.sleep(random.uniform(0.2, 1.0))  # spread: other statements get through between tries
        finally:
            bind.execute(sa.text("RESET lock_timeout"))


def upgrade() -> None:
    with op.get_context().autocommit_block():
        for name in DROPPED:
            _drop_waiting_briefly(name)


def downgrade() -> None:
    """Built on each partition concurrently, then attached to the parent's index (made ON ONLY the
    parent, so empty and invalid until every partition's is attached): no lock against the ingest."""
    bind = op.get_bind()
    methods = {"pings_location_spgist": ("spgist", "location"), "pings_received_at_brin": ("brin", "received_at")}
    with op.get_context().autocommit_block():
        partitions = bind.execute(sa.text("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                                          "WHERE i.inhparent = 'public.pings'::regclass")).scalars().all()
        for name, (method, column) in methods.items():
            bind.execute(sa.text(f"CREATE INDEX IF NOT EXISTS {name} ON ONLY pings USING {method} ({column})"))
            for partition in partitions:
                suffix = name.removeprefix("pings_")
                bind.execute(sa.text(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {partition}_{suffix} "
                                     f"ON {partition} USING {method} ({column})"))
                bind.execute(sa.text(f"ALTER INDEX {name} ATTACH PARTITION {partition}_{suffix}"))
