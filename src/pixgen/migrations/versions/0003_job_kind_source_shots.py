"""jobs.kind, source_job_id, remix_of, shots: extensions and remixes of finished jobs, multi-clip shot lists

Revision ID: 0003
Revises: 0002
Create Date: 2025-01-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("kind", sa.String(16), nullable=False, server_default="generate"))
        batch.add_column(sa.Column("source_job_id", sa.String(40), nullable=True))
        batch.add_column(sa.Column("remix_of", sa.String(40), nullable=True))
        batch.add_column(sa.Column("shots", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("shots")
        batch.drop_column("remix_of")
        batch.drop_column("source_job_id")
        batch.drop_column("kind")
