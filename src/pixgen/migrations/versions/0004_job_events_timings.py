"""job_events (the outbox of job state moves) and jobs.timings (the engine's seconds per stage)

Revision ID: 0004
Revises: 0003
Create Date: 2025-02-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

SeqType = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "job_events",
        sa.Column("seq", SeqType, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(40), nullable=False, unique=True),
        sa.Column("job_id", sa.String(40), nullable=False),
        sa.Column("key_id", sa.String(40), nullable=False),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("ix_job_events_job", "job_events", ["job_id", "seq"])
    op.create_index("ix_job_events_created", "job_events", ["created_at"])
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("timings", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("timings")
    op.drop_index("ix_job_events_created", "job_events")
    op.drop_index("ix_job_events_job", "job_events")
    op.drop_table("job_events")
