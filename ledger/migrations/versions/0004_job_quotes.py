"""jobs keep their model size and device (throughput is measured per size, device and GPU), and
what they were quoted beside what they took (seconds and USD)

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

COLUMNS = ("model_size", "device", "quoted_s", "quoted_usd", "actual_s", "actual_usd")


def upgrade() -> None:
    # All nullable: jobs recorded before 0004 have no size, no quote and no actuals; their
    # throughput is not used for quotes any more (it was pooled across sizes).
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("model_size", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("device", sa.String(length=8), nullable=True))
        batch.add_column(sa.Column("quoted_s", sa.Float(), nullable=True))
        batch.add_column(sa.Column("quoted_usd", sa.BigInteger(), nullable=True))  # nano-USD
        batch.add_column(sa.Column("actual_s", sa.Float(), nullable=True))
        batch.add_column(sa.Column("actual_usd", sa.BigInteger(), nullable=True))  # nano-USD


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        for name in reversed(COLUMNS):
            batch.drop_column(name)
