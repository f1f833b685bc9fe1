"""Orchestration: settings, database, job state machine, Celery tasks, CLI."""

__version__ = "0.1.0"
