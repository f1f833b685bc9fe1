"""worker.ops: what operators see.

What lives here: the HTTP service (health, readiness, Prometheus metrics, the JSON API and
the dashboard with its login), the metrics collector, and the read-only overview queries
that the API, the dashboard and the CLI's ``status``/``jobs``/``studies`` share.

May import: ``worker.pipeline``, ``worker.ingest``, ``worker.runtime``, ``worker.store``,
``worker.settings``, ``worker.logs``, ``dicom_gateway`` and ``models`` -- not ``research``
(its sibling), ``service`` or ``cli``.
"""
