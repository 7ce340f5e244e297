"""cost lines per session and month, alert sends, launch attempts

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cost_lines",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "session_id", sa.Integer(), sa.ForeignKey("rental_sessions.id"), nullable=False
        ),
        sa.Column("month", sa.String(7), nullable=False),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("gpu_model", sa.String(32), nullable=False),
        sa.Column("market", sa.String(16), nullable=False),
        sa.Column("owned", sa.Boolean(), nullable=False),
        sa.Column("job_id", sa.String(64), nullable=True),
        sa.Column("compute_usd", sa.BigInteger(), nullable=False),
        sa.Column("storage_usd", sa.BigInteger(), nullable=False),
        sa.Column("ipv4_usd", sa.BigInteger(), nullable=False),
        sa.Column("duration_us", sa.BigInteger(), nullable=False),
        sa.Column("billed_us", sa.BigInteger(), nullable=False),
        sa.Column("gpu_us", sa.BigInteger(), nullable=False),
        sa.UniqueConstraint("session_id", "month"),
    )
    # Covering index: monthly sums and the buy signal read only the index, never the rows.
    op.create_index(
        "ix_cost_lines_month",
        "cost_lines",
        ["month", "owned", "gpu_model", "compute_usd", "storage_usd", "ipv4_usd", "gpu_us"],
    )
    # Open sessions are looked up on every report and check: find them without a scan.
    op.create_index("ix_sessions_end", "rental_sessions", ["end_at"])
    op.create_table(
        "alert_sends",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("rule", sa.String(128), nullable=False),
        sa.Column("period", sa.String(64), nullable=False),
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("sent_at", sa.DateTime(), nullable=True),
        sa.UniqueConstraint("rule", "period", "channel"),
    )
    op.create_table(
        "launch_attempts",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("job_id", sa.String(64), nullable=True),
        sa.Column("session_id", sa.Integer(), nullable=True),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("region", sa.String(32), nullable=False),
        sa.Column("zone", sa.String(32), nullable=False),
        sa.Column("instance_type", sa.String(64), nullable=False),
        sa.Column("market", sa.String(16), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("error_code", sa.String(64), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_launch_attempts_job_id", "launch_attempts", ["job_id"])


def downgrade() -> None:
    op.drop_index("ix_sessions_end", "rental_sessions")
    op.drop_table("launch_attempts")
    op.drop_table("alert_sends")
    op.drop_table("cost_lines")
