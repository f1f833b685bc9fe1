"""Imaging: received pixels to a model-ready image (LUTs, windowing, MONOCHROME1, resize),
and the conversions' names.  May import ``transfer``, ``spool``, ``uids``.
"""
