"""Retired tracker ids: an OsmAnd id whose device was removed (or whose user was erased) can
never be registered again, by anyone

The id is the device's only credential, and the phone that has it keeps posting after its
device was removed: whoever registered the same id next would receive that phone's fixes
(DESIGN rule 8). A trigger records each deleted tracker's id, as a SHA-256 (the id itself is
no longer needed, only its refusal), whatever deleted it.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "retired_trackers",
        sa.Column("protocol", sa.Text, nullable=False),
        sa.Column("external_id_sha256", sa.LargeBinary(32), nullable=False),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("protocol", "external_id_sha256", name="retired_trackers_pkey"),
    )
    op.execute("""
        CREATE FUNCTION retire_tracker() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          INSERT INTO retired_trackers (protocol, external_id_sha256)
          VALUES (OLD.protocol, sha256(convert_to(OLD.external_id, 'UTF8'))) ON CONFLICT DO NOTHING;
          RETURN OLD;
        END $$""")
    op.execute("CREATE TRIGGER trackers_retire AFTER DELETE ON trackers FOR EACH ROW EXECUTE FUNCTION retire_tracker()")


def downgrade() -> None:
    op.execute("DROP TRIGGER trackers_retire ON trackers")
    op.execute("DROP FUNCTION retire_tracker()")
    op.drop_table("retired_trackers")
