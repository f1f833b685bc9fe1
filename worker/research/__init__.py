"""worker.research."""
