"""Account erasure: the users row stays as a tombstone (`erased_at`), and nothing new about an
erased user can be written by a request that raced the erasure

A request authenticated just before an erasure committed may still be on its way to an
insert (a trip, contacts, PINs, a device). Each of those tables gets a trigger that locks
the user's row (FOR KEY SHARE: it waits for an erasure holding it FOR UPDATE, then sees
the erased row) and refuses the insert for an erased user, as a foreign key would. The
ping flush guards itself in its own statement (`positions.history.STORE`); alerts are
left unguarded on purpose: an SOS racing an erasure still reaches the dispatchers.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

GUARDED = ("trips", "contacts", "pins", "devices", "trackers")


def upgrade() -> None:
    op.add_column('users', sa.Column('erased_at', sa.DateTime(timezone=True), nullable=True))
    op.execute("""
        CREATE FUNCTION refuse_erased_user() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          PERFORM 1 FROM users WHERE user_id = NEW.user_id AND erased_at IS NULL FOR KEY SHARE;
          IF NOT FOUND THEN
            RAISE EXCEPTION 'the account is erased' USING ERRCODE = 'foreign_key_violation';
          END IF;
          RETURN NEW;
        END $$""")
    for table in GUARDED:
        op.execute(f"CREATE TRIGGER {table}_refuse_erased_user BEFORE INSERT ON {table} "
                   f"FOR EACH ROW EXECUTE FUNCTION refuse_erased_user()")


def downgrade() -> None:
    for table in GUARDED:
        op.execute(f"DROP TRIGGER {table}_refuse_erased_user ON {table}")
    op.execute("DROP FUNCTION refuse_erased_user()")
    op.drop_column('users', 'erased_at')
