"""Durable jobs: schema, store (state machine + credits), API keys, workers. Imports no torch."""

from pixgen.jobs.db import Database, connect, migrate
from pixgen.jobs.keys import ApiKey, authenticate, create_key
from pixgen.jobs.states import JobStatus
from pixgen.jobs.store import Beat, Claim, Job, JobStore, Outcome, Submitted

__all__ = ["ApiKey", "Beat", "Claim", "Database", "Job", "JobStatus", "JobStore", "Outcome", "Submitted",
           "authenticate", "connect", "create_key", "migrate"]
