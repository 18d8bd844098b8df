"""jobs.manifest (what made a finished video, JSON), jobs.preview_file (the early draft) and jobs.replay_of

Revision ID: 0009
Revises: 0006
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0006"  # written against 0004; re-chained onto main's head (0006) when main was merged in
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
