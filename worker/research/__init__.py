"""worker.research: retrospective studies on a running gateway.

What lives here: ``batch`` (list a folder, an image table, a PACS or a DICOMweb server,
feed the gateway a chunk at a time, read outcomes back, write predictions), ``evaluate``
(predictions against reference labels, as the paper's Table 1) and the wrapper-compatible
one-image ``run`` command.

May import: ``worker.pipeline``, ``worker.ingest``, ``worker.runtime``, ``worker.store``,
``worker.settings``, ``worker.logs``, ``dicom_gateway`` and ``models`` -- not ``ops`` (its
sibling), ``service`` or ``cli``.
"""
