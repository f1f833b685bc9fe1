"""``python -m worker.cli``: how ``worker --per-device`` starts its children."""

from worker.cli import main

raise SystemExit(main())
