"""The listener's adaptations of pynetdicom internals (``compat``, ``encoding``) and the
canary that hashes the pynetdicom code they rely on.  May import the rest of ``listen``
and the rooms below it.
"""
