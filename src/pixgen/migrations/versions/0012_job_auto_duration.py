"""jobs.auto_duration: the job was asked with duration "auto" (the model chooses the length), a column of its own

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

# The stored request is JSON text: ``model_dump_json``'s (no spaces) or, scrubbed under zero data retention,
# ``json.dumps``' (a space after the colon). A string value's quotes are escaped, so only the field itself matches
# (no nested item has a duration).
_AUTO_FORMS = ('%"duration":"auto"%', '%"duration": "auto"%')


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("auto_duration", sa.Boolean, nullable=False, server_default=sa.false()))
    jobs = sa.table("jobs", sa.column("request", sa.Text), sa.column("auto_duration", sa.Boolean))
    op.execute(jobs.update().where(sa.or_(*(jobs.c.request.like(form) for form in _AUTO_FORMS)))
               .values(auto_duration=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("auto_duration")
