"""Everything DICOM: listener, spool, admission, conversion, SR building and sending.

This package knows nothing of Celery or the database: persistence reaches the
listener as a callback, and results reach the SR builder as plain values.
"""
