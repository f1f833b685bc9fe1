"""Receiving: the C-ECHO/C-STORE listener, its limits, the connection hand-out, slots,
the association log, the store checks and integrity; ``pynetdicom/`` holds the adaptations
of pynetdicom internals and their canary.  May import ``transfer``, ``spool``, ``uids``.
"""
