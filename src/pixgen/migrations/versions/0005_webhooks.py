"""Signed webhooks: a signing secret per API key, a webhook per job, and the deliveries table

Revision ID: 0005
Revises: 0004
Create Date: 2025-02-10
"""

import base64
import secrets

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("webhook_secret", sa.String(80), nullable=True))
        batch.add_column(sa.Column("webhook_secret_previous", sa.String(80), nullable=True))
        batch.add_column(sa.Column("webhook_secret_previous_until", sa.Float, nullable=True))
    keys = sa.table("api_keys", sa.column("id", sa.String), sa.column("webhook_secret", sa.String))
    conn = op.get_bind()
    for (key_id,) in conn.execute(sa.select(keys.c.id)).all():  # keys made before webhooks get a secret now
        secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode("ascii")
        conn.execute(keys.update().where(keys.c.id == key_id).values(webhook_secret=secret))
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("webhook_url", sa.Text, nullable=True))
        batch.add_column(sa.Column("webhook_events", sa.String(80), nullable=True))
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("job_id", sa.String(40), nullable=False),
        sa.Column("key_id", sa.String(40), nullable=False),
        sa.Column("event_type", sa.String(40), nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("signer", sa.String(8), nullable=False),
        sa.Column("state", sa.String(12), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", sa.Float, nullable=False),
        sa.Column("lease_token", sa.String(32), nullable=True),
        sa.Column("lease_expires_at", sa.Float, nullable=True),
        sa.Column("body", sa.Text, nullable=True),
        sa.Column("last_status", sa.Integer, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("finished_at", sa.Float, nullable=True),
    )
    op.create_index("ix_webhook_deliveries_due", "webhook_deliveries", ["state", "next_attempt_at"])
    op.create_index("ix_webhook_deliveries_job", "webhook_deliveries", ["job_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_webhook_deliveries_job", "webhook_deliveries")
    op.drop_index("ix_webhook_deliveries_due", "webhook_deliveries")
    op.drop_table("webhook_deliveries")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("webhook_events")
        batch.drop_column("webhook_url")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("webhook_secret_previous_until")
        batch.drop_column("webhook_secret_previous")
        batch.drop_column("webhook_secret")
