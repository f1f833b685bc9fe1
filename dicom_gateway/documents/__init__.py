"""Documents the gateway writes: the SR, its codes and draft values, the addendum, the
report pages and PDF, and the one owner of their series numbers and research-only marks.
May import ``transfer``, ``spool``, ``uids``."""
