"""jobs.retake_start, retake_end: the time range a retake job regenerates (seconds on the source's clock)

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("retake_start", sa.Float, nullable=True))
        batch.add_column(sa.Column("retake_end", sa.Float, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("retake_end")
        batch.drop_column("retake_start")
