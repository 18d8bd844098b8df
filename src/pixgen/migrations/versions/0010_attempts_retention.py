"""submit_attempts (the rate limit counts refused submits too) and pruned_totals (the metrics' counts of rows that
retention deleted, so counters never go down)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-08
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

SeqType = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "submit_attempts",
        sa.Column("seq", SeqType, primary_key=True, autoincrement=True),
        sa.Column("key_id", sa.String(40), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
    )
    op.create_index("ix_submit_attempts_key_at", "submit_attempts", ["key_id", "at"])
    op.create_table(
        "pruned_totals",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("labels", sa.String(200), primary_key=True),
        sa.Column("value", sa.Float, nullable=False, server_default="0"),
    )
    # Finished jobs are found by age when retention sweeps (jobs.retention).
    op.create_index("ix_jobs_finished_at", "jobs", ["finished_at"])


def downgrade() -> None:
    op.drop_index("ix_jobs_finished_at", "jobs")
    op.drop_table("pruned_totals")
    op.drop_index("ix_submit_attempts_key_at", "submit_attempts")
    op.drop_table("submit_attempts")
