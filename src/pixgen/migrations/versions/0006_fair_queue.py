"""jobs.queue_round: the fair claim order across API keys (jobs.queue_order)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Jobs queued before this migration all get round 0: they keep their first-come order.
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("queue_round", sa.BigInteger, nullable=False, server_default="0"))
    op.create_index("ix_jobs_status_round_seq", "jobs", ["status", "queue_round", "seq"])
    op.create_index("ix_jobs_key_status_round", "jobs", ["key_id", "status", "queue_round"])


def downgrade() -> None:
    op.drop_index("ix_jobs_key_status_round", "jobs")
    op.drop_index("ix_jobs_status_round_seq", "jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("queue_round")
