"""Transfer: where results go (destinations), sending them (C-STORE SCU, STOW-RS) and
pulling studies from an archive (C-FIND/C-MOVE/C-GET, QIDO-RS/WADO-RS).  May import
``spool`` and ``uids``."""
