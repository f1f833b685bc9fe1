"""worker.ingest."""
