"""worker.store: the database, the one source of truth.

What lives here: the SQLAlchemy schema and sessions (``db``), the job state machine, one
conditional UPDATE plus an event row per change (``jobs``), process registration and
heartbeats (``liveness``), the skipped-study retention sweep (``retention``), and the Alembic
migrations (``migrations/``, run idempotently on every start).

May import: ``worker.settings``, ``worker.logs``, ``models`` and ``dicom_gateway`` -- never
``worker.runtime``, ``ingest``, ``pipeline``, ``ops``, ``research``, ``service`` or ``cli``
(the import contract in pyproject.toml; docs/architecture.md).
"""
