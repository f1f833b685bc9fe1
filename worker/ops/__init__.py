"""worker.ops."""
