"""Everything DICOM, in rooms by stage: ``listen`` (receiving), ``routing`` (rules and
admission), ``imaging`` (pixels to a model-ready image), ``documents`` (SR, addendum,
pages, PDF, their series and research marks), ``transfer`` (destinations, sending,
retrieving), over ``spool`` and ``uids``.

This package knows nothing of Celery or the database: persistence reaches the
listener as a callback, and results reach the SR builder as plain values.  Its rooms'
``__init__`` files import nothing, so settings load no DICOM library.
"""
