"""worker.pipeline: the jobs' stages on the queue.

What lives here: the Celery app and its embedded file-system broker, the ``cxr.*`` tasks
(names fixed: queued messages must survive an upgrade), the stage functions they call
(prepare, infer, report and deliver), the openai backend's in-flight loop, the reconciler
that republishes, retries and takes over jobs from the database, and the one-worker-per-GPU
supervisor.

May import: ``worker.runtime``, ``worker.store``, ``worker.settings``, ``worker.logs``,
``dicom_gateway`` and ``models`` -- not ``ingest`` (its sibling), ``ops``, ``research``,
``service`` or ``cli``.
"""
