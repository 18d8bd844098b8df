"""Running totals of what the metrics counted from rows that retention has since deleted (``pruned_totals``).

Retention (``jobs.retention``) adds a deleted batch's counts here in the transaction that deletes it; the metrics
(``jobs.stats``, ``jobs.deliveries``) add these totals to what they count from the rows still kept, so a counter
never goes down when rows are pruned. A tally is a name (``JOBS``, ``STAGES``, ``WEBHOOKS``) and, per label tuple,
a number.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import Connection, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from pixgen.jobs.schema import pruned_totals as table

JOBS = "jobs"  # labels: (status, surface, quality) → jobs
STAGES = "stage"  # labels: (stage, quality, bucket upper bound | "count" | "sum") → jobs, or seconds for "sum"
WEBHOOKS = "webhooks"  # labels: ("delivered",) / ("given_up",) / ("failed_attempts",) → deliveries or attempts
SEPARATOR = "|"

Labels = tuple[str, ...]


def read(conn: Connection, name: str) -> dict[Labels, float]:
    """The totals of tally ``name``, by label tuple."""
    rows = conn.execute(select(table.c.labels, table.c.value).where(table.c.name == name)).all()
    return {tuple(labels.split(SEPARATOR)): float(value) for labels, value in rows}


def add(conn: Connection, name: str, counts: Mapping[Labels, float]) -> None:
    """Add ``counts`` to tally ``name``, inside the caller's transaction (one upsert per label tuple)."""
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    for labels, value in counts.items():
        if not value:
            continue
        statement = insert(table).values(name=name, labels=SEPARATOR.join(labels), value=float(value))
        conn.execute(statement.on_conflict_do_update(index_elements=[table.c.name, table.c.labels],
                                                     set_={"value": table.c.value + statement.excluded.value}))
