"""worker.ingest: from a received instance to a job.

What lives here: the listener's persistence callback, which records every stored instance
and association before the listener answers success (``sink``), the listener processes
behind one port (``processes``), and study assembly: a quiet study's admission and its job
(``assembler``).

May import: ``worker.runtime``, ``worker.store``, ``worker.settings``, ``worker.logs``,
``dicom_gateway`` and ``models`` -- not ``pipeline`` (a new job reaches the queue through the
reconciler), ``ops``, ``research``, ``service`` or ``cli``.
"""
