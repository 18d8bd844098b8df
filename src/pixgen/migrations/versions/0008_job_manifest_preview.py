"""jobs.manifest (what made a finished video, JSON), jobs.preview_file (the early draft) and jobs.replay_of

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("manifest", sa.Text, nullable=True))
        batch.add_column(sa.Column("preview_file", sa.String(255), nullable=True))
        batch.add_column(sa.Column("replay_of", sa.String(40), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("replay_of")
        batch.drop_column("preview_file")
        batch.drop_column("manifest")
