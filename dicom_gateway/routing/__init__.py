"""Routing: the site's rules (conditions, facts, fields, rule sets and their validation),
the study decision and the built-in admission.  May import ``transfer``, ``spool``, ``uids``.
"""
