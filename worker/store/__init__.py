"""worker.store."""
