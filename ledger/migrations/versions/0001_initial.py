"""initial: jobs, rental sessions, price points

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("gpu_model", sa.String(32), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("ended_at", sa.DateTime(), nullable=True),
        sa.Column("max_usd", sa.BigInteger(), nullable=True),
        sa.Column("lines_per_s", sa.Float(), nullable=True),
        sa.Column("data_wait_fraction", sa.Float(), nullable=True),
        sa.Column("gpu_util", sa.Float(), nullable=True),
        sa.Column("best_cer", sa.Float(), nullable=True),
        sa.Column("metrics", sa.JSON(), nullable=False),
    )
    op.create_index("ix_jobs_status", "jobs", ["status"])
    op.create_table(
        "rental_sessions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("region", sa.String(32), nullable=False),
        sa.Column("zone", sa.String(32), nullable=False),
        sa.Column("instance_type", sa.String(64), nullable=False),
        sa.Column("instance_id", sa.String(64), nullable=True),
        sa.Column("gpu_model", sa.String(32), nullable=False),
        sa.Column("gpu_count", sa.Integer(), nullable=False),
        sa.Column("market", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("start_at", sa.DateTime(), nullable=False),
        sa.Column("end_at", sa.DateTime(), nullable=True),
        sa.Column("end_reason", sa.String(32), nullable=True),
        sa.Column("volume_gb", sa.Integer(), nullable=False),
        sa.Column("volume_type", sa.String(16), nullable=False),
        sa.Column("public_ipv4", sa.Boolean(), nullable=False),
        sa.Column("job_id", sa.String(64), sa.ForeignKey("jobs.id"), nullable=True),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("min_billed_s", sa.Integer(), nullable=False),
        sa.Column("interruption_free_s", sa.Integer(), nullable=False),
        sa.Column("ebs_usd_per_gb_month", sa.BigInteger(), nullable=False),
        sa.Column("ipv4_usd_per_hour", sa.BigInteger(), nullable=False),
        sa.Column("on_demand_usd_per_hour", sa.BigInteger(), nullable=True),
        sa.Column("owned", sa.Boolean(), nullable=False),
        sa.Column("gpu_util_mean", sa.Float(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_rental_sessions_provider", "rental_sessions", ["provider"])
    op.create_index("ix_rental_sessions_instance_id", "rental_sessions", ["instance_id"])
    op.create_index("ix_rental_sessions_job_id", "rental_sessions", ["job_id"])
    op.create_index("ix_sessions_start", "rental_sessions", ["start_at"])
    op.create_table(
        "price_points",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "session_id", sa.Integer(), sa.ForeignKey("rental_sessions.id"), nullable=True
        ),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("zone", sa.String(32), nullable=False),
        sa.Column("instance_type", sa.String(64), nullable=False),
        sa.Column("market", sa.String(16), nullable=False),
        sa.Column("usd_per_hour", sa.BigInteger(), nullable=False),
        sa.Column("in_force_from", sa.DateTime(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_price_points_session_id", "price_points", ["session_id"])


def downgrade() -> None:
    op.drop_table("price_points")
    op.drop_table("rental_sessions")
    op.drop_table("jobs")
