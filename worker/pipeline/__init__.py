"""worker.pipeline."""
