"""The one schema, served by SQLite and PostgreSQL alike (created and upgraded by the Alembic migrations).

Times are UNIX seconds (float) taken from the writer's clock: nodes of a fleet need NTP, and leases are long
enough (default 60 s) that small skews do not matter.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)

metadata = MetaData()

# BigInteger for the queue order on PostgreSQL, plain INTEGER on SQLite (where only INTEGER PRIMARY KEY autoincrements).
SeqType = BigInteger().with_variant(Integer(), "sqlite")

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(40), primary_key=True),  # "key_…", public handle, not a secret
    Column("name", String(200), nullable=False, default=""),
    Column("key_hash", String(64), nullable=False, unique=True),  # sha256 hex of the secret key
    Column("prefix", String(16), nullable=False),  # the first characters of the key, to recognise it
    Column("credits", BigInteger, nullable=False, default=0),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("created_at", Float, nullable=False),
    # Standard Webhooks signing secret "whsec_<base64>" (jobs.webhooks); after a rotation the previous one still
    # signs too, until ``webhook_secret_previous_until``.
    Column("webhook_secret", String(80), nullable=True),
    Column("webhook_secret_previous", String(80), nullable=True),
    Column("webhook_secret_previous_until", Float, nullable=True),
)

jobs = Table(
    "jobs",
    metadata,
    Column("seq", SeqType, primary_key=True, autoincrement=True),  # queue order
    Column("id", String(40), nullable=False, unique=True),  # "job_…"
    Column("key_id", String(40), ForeignKey("api_keys.id"), nullable=False),
    Column("model", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("request", Text, nullable=False),  # canonical VideoRequest JSON (seed drawn); scrubbed under ZDR
    Column("request_hash", String(64), nullable=False),  # of the request as asked, for Idempotency-Key
    Column("idempotency_key", String(255), nullable=True),
    Column("surface", String(16), nullable=False, default="jobs"),  # which API created it (jobs|cloudflare|openai)
    Column("prompt", Text, nullable=True),  # as used (after thinking / style); scrubbed under ZDR
    Column("original_prompt", Text, nullable=True),
    Column("seed", BigInteger, nullable=False),
    Column("quality", String(8), nullable=False),
    Column("aspect_ratio", String(8), nullable=True),
    Column("duration", Integer, nullable=False),
    Column("credit_cost", Integer, nullable=False),
    Column("refunded", Boolean, nullable=False, default=False),
    Column("progress", Integer, nullable=False, default=0),
    Column("stage", String(32), nullable=True),
    Column("cancel_requested", Boolean, nullable=False, default=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("lease_token", String(64), nullable=True),
    Column("lease_expires_at", Float, nullable=True),
    Column("worker_id", String(64), nullable=True),
    Column("error_code", String(32), nullable=True),
    Column("error_message", Text, nullable=True),
    Column("video_file", String(255), nullable=True),  # file name inside the media folder
    Column("thumb_file", String(255), nullable=True),
    Column("width", Integer, nullable=True),
    Column("height", Integer, nullable=True),
    Column("seconds", Float, nullable=True),
    Column("has_audio", Boolean, nullable=True),
    Column("media_deleted", Boolean, nullable=False, default=False),
    Column("created_at", Float, nullable=False),
    Column("started_at", Float, nullable=True),
    Column("finished_at", Float, nullable=True),
    Column("updated_at", Float, nullable=False),
    Column("deleted_at", Float, nullable=True),  # deleted by its owner (OpenAI DELETE): hidden, files removed
    Column("kind", String(16), nullable=False, default="generate", server_default="generate"),  # generate|extend|retake
    Column("source_job_id", String(40), nullable=True),  # extend: the job whose video is continued
    Column("remix_of", String(40), nullable=True),  # remix: the job whose settings and seed were taken
    Column("shots", Text, nullable=True),  # multi-clip: JSON [{index, prompt, start, end}]
    Column("timings", Text, nullable=True),  # the engine's seconds per stage: JSON {"text": 0.4, "denoise": 12.1, ...}
    # The fair claim order across keys: workers take pending jobs by (queue_round, seq) (jobs.queue_order).
    Column("queue_round", BigInteger, nullable=False, default=0, server_default="0"),
    Column("webhook_url", Text, nullable=True),  # where this job's events are POSTed (jobs.webhooks), if anywhere
    Column("webhook_events", String(80), nullable=True),  # which: "completed,failed,cancelled" (comma-separated)
    Column("retake_start", Float, nullable=True),  # retake: the range regenerated, seconds on the source's clock
    Column("retake_end", Float, nullable=True),
    Column("manifest", Text, nullable=True),  # what made the finished video: JSON (jobs.manifest.build_manifest)
    Column("preview_file", String(255), nullable=True),  # the early draft inside the media store, once made
    Column("replay_of", String(40), nullable=True),  # replay: the job whose manifest it makes again
    Column("soundtrack", Text, nullable=True),  # a given soundtrack's fit to the video: JSON (engine SoundtrackFit)
    # Asked with duration "auto" (the model chooses the length): ``duration`` is the longest until the job has run.
    Column("auto_duration", Boolean, nullable=False, default=False, server_default=false()),
    UniqueConstraint("key_id", "idempotency_key", name="uq_jobs_key_idempotency"),
    Index("ix_jobs_status_seq", "status", "seq"),
    Index("ix_jobs_key_created", "key_id", "created_at"),
    Index("ix_jobs_status_round_seq", "status", "queue_round", "seq"),
    Index("ix_jobs_key_status_round", "key_id", "status", "queue_round"),
    Index("ix_jobs_finished_at", "finished_at"),  # retention finds finished jobs by age (jobs.retention)
)

# The outbox: one row per thing that happened to a job, written in the transaction that made it happen (a state
# move, a submit, a cancel request, a progress step). Webhook deliveries and metrics are read from here.
job_events = Table(
    "job_events",
    metadata,
    Column("seq", SeqType, primary_key=True, autoincrement=True),
    Column("id", String(40), nullable=False, unique=True),  # "evt_…": the webhook-id of every delivery of it
    Column("job_id", String(40), nullable=False),
    Column("key_id", String(40), nullable=False),
    Column("kind", String(24), nullable=False),  # jobs.events.EventKind
    Column("status", String(16), nullable=False),  # the job's status right after the event
    Column("data", Text, nullable=False, default="{}"),  # JSON: progress, stage, error code... (events.Event)
    Column("created_at", Float, nullable=False),
    Index("ix_job_events_job", "job_id", "seq"),
    Index("ix_job_events_created", "created_at"),
)

# One row per webhook to send: written with the event it announces (same transaction), claimed under a lease by
# one deliverer at a time, retried with back-off until delivered or given up (jobs.deliveries).
webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", String(40), primary_key=True),  # the event's id ("evt_…"): the webhook-id of every attempt
    Column("job_id", String(40), nullable=False),
    Column("key_id", String(40), nullable=False),
    Column("event_type", String(40), nullable=False),  # "job.completed", "video.failed", ...
    Column("url", Text, nullable=False),
    Column("signer", String(8), nullable=False),  # "key": the job key's secret; "server": --webhook-secret
    Column("state", String(12), nullable=False),  # pending | delivered | failed (given up)
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", Float, nullable=False),
    Column("lease_token", String(32), nullable=True),  # the deliverer sending it now, until lease_expires_at
    Column("lease_expires_at", Float, nullable=True),
    Column("body", Text, nullable=True),  # the JSON sent, fixed at the first attempt so retries send the same bytes
    Column("last_status", Integer, nullable=True),  # the receiver's last HTTP status
    Column("last_error", Text, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("finished_at", Float, nullable=True),
    Index("ix_webhook_deliveries_due", "state", "next_attempt_at"),
    Index("ix_webhook_deliveries_job", "job_id", "created_at"),
)

workers = Table(
    "workers",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("hostname", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("model", String(255), nullable=False),
    Column("started_at", Float, nullable=False),
    Column("heartbeat_at", Float, nullable=False),
    Column("job_id", String(40), nullable=True),
    Column("stopped", Boolean, nullable=False, default=False),
    Column("warmup", Text, nullable=True),  # its warm-up's state, JSON (pixgen.engine.warmup.WarmupState)
)

# One row per admitted submit or estimate of a key (``JobStore.admit``), refused ones included: the per-key rate
# limit counts these over the last minute, so a key refused for credits or bad media still uses up its rate.
# Rows older than the window are deleted as the key's next attempt is admitted.
submit_attempts = Table(
    "submit_attempts",
    metadata,
    Column("seq", SeqType, primary_key=True, autoincrement=True),
    Column("key_id", String(40), nullable=False),
    Column("at", Float, nullable=False),
    Index("ix_submit_attempts_key_at", "key_id", "at"),
)

# What the metrics had counted from rows that retention has since deleted (``jobs.retention``), added in the
# transaction that deletes them, so the fleet's counters never go down: ``name`` the tally (``jobs``, ``stage``,
# ``webhooks``), ``labels`` its label values joined by ``|``.
pruned_totals = Table(
    "pruned_totals",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("labels", String(200), primary_key=True),
    Column("value", Float, nullable=False, default=0.0),
)
