"""The listener's adaptations of pynetdicom internals (``compat``, ``encoding``) and the
canary that hashes the pynetdicom code they rely on.  Imports only the listener's room.
"""
