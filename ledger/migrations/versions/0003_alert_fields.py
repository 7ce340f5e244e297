"""alert sends keep the alert's structured fields, so a retried webhook carries them too

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # batch: SQLite cannot ALTER a table in every way; a plain add column it can, but batch
    # keeps the downgrade (drop column) portable too.
    with op.batch_alter_table("alert_sends") as batch:
        batch.add_column(sa.Column("message_fields", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("alert_sends") as batch:
        batch.drop_column("message_fields")
