"""Durable jobs: schema, store (state machine + credits + outbox), API keys, workers. Imports no torch."""
