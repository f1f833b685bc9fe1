"""worker.readers: the reader study of the paper's section 4.1 on a site's own cases.

What lives here: choosing the cases and their reference (``cases``), what the reading page
shows a reader under each condition and the source image it draws (``reading``), the
figures of a finished study (``summary``: statistics; ``figures``: the paper's four
charts and a markdown table) and the tidy CSVs (``export``).  The design (conditions,
statements, the schedule rule) is ``worker.store.reader_design``'s and the record
(studies, reads, answers, blinding) ``worker.store.reader_studies``'s, so the HTTP
service and the CLI read one account.

May import: ``worker.pipeline``, ``worker.ingest`` and below (the import contract in
pyproject.toml); ``worker.ops`` and ``worker.research`` import it, never the reverse.
"""
