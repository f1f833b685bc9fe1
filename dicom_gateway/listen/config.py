"""The listener's limits and TLS files: plain values, importable without pynetdicom.

``worker/settings.py`` builds these from ``CXR_*`` settings; keeping them apart from
``dicom_gateway/listen/listener.py`` lets ``cxr-gateway settings`` (and everything else that only
reads settings) run without loading the DICOM network stack.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

DEFAULT_MAX_INSTANCE_BYTES = 512 * 2**20


@dataclass(frozen=True)
class ListenerLimits:
    """What one listener allows a sender: associations, PDU size, timeouts, disk, size."""

    max_associations: int = 25
    max_pdu_size: int = 0  # 0 = unlimited: fewer, larger PDUs are much faster
    acse_timeout: float = 30.0
    dimse_timeout: float = 30.0
    network_timeout: float = 60.0
    min_free_bytes: int = 0
    max_instance_bytes: int = DEFAULT_MAX_INSTANCE_BYTES
    association_request_seconds: float = 5.0


@dataclass(frozen=True)
class TLSFiles:
    """The server's certificate and key, and the CA whose clients it accepts (if any)."""

    certificate: Path
    private_key: Path
    client_ca: Path | None = None  # when set, clients must present a certificate it signed

    def context(self) -> ssl.SSLContext:
        """A TLS 1.2+ server context; a bad certificate or key fails here, naming it."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(str(self.certificate), str(self.private_key))
        if self.client_ca is not None:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(str(self.client_ca))
        return ctx
