"""One rule for "this HTTP error is permanent", for every HTTP client in the gateway.

STOW-RS delivery, WADO-RS/QIDO-RS retrieval, the OpenAI-compatible backend and the
hf-space backend all ask the same question of a failed request: would sending the same
request again, later, get a different answer?  They used to answer it three different
ways; this module is the one answer, and it lives in ``models/`` because ``models/`` may
not import ``dicom_gateway/`` while ``dicom_gateway/`` may import this small pure module.

The rule (RFC 9110 semantics):

* 4xx says the request itself is wrong (bad body, unknown resource, not authorised,
  conflicts with what the server holds): the same request fails again, so *permanent*;
  except 408 Request Timeout, 425 Too Early and 429 Too Many Requests, which say "not
  now" and invite a retry.
* 501 Not Implemented and 505 HTTP Version Not Supported say the server does not do this
  at all: permanent.
* Every other 5xx (500, 502, 503, 504, ...) is the server's or a proxy's trouble of the
  moment: transient.  So is a status the rule does not know, and so is no answer at all
  (a refused connection, a timeout): those are decided by the caller, not here.
"""

from __future__ import annotations

from http import HTTPStatus

RETRY_LATER_4XX = frozenset({408, 425, 429})
PERMANENT_5XX = frozenset({501, 505})


def is_permanent_http_status(code: int) -> bool:
    """True when repeating the same request cannot succeed (see the module docstring)."""
    if 400 <= code < 500:
        return code not in RETRY_LATER_4XX
    return code in PERMANENT_5XX


def describe_http_status(code: int) -> str:
    """``HTTP 404 Not Found``: the code and its standard phrase, for details and logs."""
    try:
        return f"HTTP {code} {HTTPStatus(code).phrase}"
    except ValueError:
        return f"HTTP {code}"
