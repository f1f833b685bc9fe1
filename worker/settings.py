"""All settings in one typed place.

Precedence: built-in defaults < an optional TOML file (``CXR_CONFIG_FILE`` or
``--config``) < environment variables ``CXR_<FIELD>``.  Defaults run everything on
one machine with nothing but Python: SQLite in the data directory and an embedded
broker, so ``cxr-gateway serve`` works on a laptop and the same code scales out by
pointing ``CXR_DATABASE_URL`` and ``CXR_BROKER_URL`` at PostgreSQL and Redis.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dicom_gateway.conversion import CONVERSIONS
from dicom_gateway.destinations import Destination, parse_destinations
from dicom_gateway.listener import ListenerLimits, TLSFiles
from models.labels import CHEXPERT_LABELS
from models.registry import BACKENDS, BackendConfig, canonical

ENV_PREFIX = "CXR_"
EMBEDDED_BROKER = "embedded"


class SettingsError(ValueError):
    """A setting has a value that cannot be used; the message names it."""


@dataclass(frozen=True)
class Settings:
    data_dir: Path = field(
        default=Path("var"), metadata={"help": "Spool, outbox, database and embedded broker."}
    )
    ae_title: str = field(default="CXRGATEWAY", metadata={"help": "Our AE title (called AE)."})
    host: str = field(default="127.0.0.1", metadata={"help": "Listener bind address."})
    port: int = field(default=11112, metadata={"help": "Listener TCP port."})
    allowed_calling_aets: tuple[str, ...] = field(
        default=(), metadata={"help": "Comma list of calling AE titles allowed; empty = any."}
    )
    max_associations: int = field(
        default=25, metadata={"help": "Concurrent associations; more are rejected (transient)."}
    )
    max_pdu_size: int = field(default=0, metadata={"help": "Largest PDU we receive; 0 = no limit."})
    acse_timeout: float = field(default=30.0, metadata={"help": "Association setup timeout (s)."})
    dimse_timeout: float = field(default=30.0, metadata={"help": "DIMSE message timeout (s)."})
    network_timeout: float = field(default=60.0, metadata={"help": "Idle network timeout (s)."})
    min_free_mb: int = field(
        default=256, metadata={"help": "Answer 0xA700 when the spool has less free disk (MiB)."}
    )
    tls_cert_file: str = field(default="", metadata={"help": "TLS: server certificate (PEM)."})
    tls_key_file: str = field(default="", metadata={"help": "TLS: server private key (PEM)."})
    tls_ca_file: str = field(
        default="", metadata={"help": "TLS: CA for client certificates (set = required)."}
    )
    skipped_retention_hours: float = field(
        default=24.0, metadata={"help": "Keep skipped instances' files this long, then delete."}
    )
    destinations: tuple[Destination, ...] = field(
        default=(),
        metadata={"help": "Comma list of SR destinations: AE@host:port[/comprehensive], "
                          "reply:PORT (back to the sender), or a DICOMweb URL (STOW-RS)."},
    )
    database_url: str = field(
        default="", metadata={"help": "SQLAlchemy URL; empty = SQLite (WAL) in the data dir."}
    )
    broker_url: str = field(
        default=EMBEDDED_BROKER,
        metadata={"help": "Celery broker; 'embedded' = file queue in the data dir, or redis://"},
    )
    model_backend: str = field(
        default="mock",
        metadata={"help": "mock (wiring only, labelled as mock), local, openai or hf-space."},
    )
    model_id: str = field(
        default="nvidia/NV-Reason-CXR-3B", metadata={"help": "Model repository id."}
    )
    model_revision: str = field(
        default="", metadata={"help": "Model revision; empty = the pin for the default model."}
    )
    device: str = field(default="auto", metadata={"help": "local backend: auto, cuda[:N], cpu."})
    allow_cpu: bool = field(
        default=False, metadata={"help": "local backend: allow (slow, float32) CPU inference."}
    )
    torch_dtype: str = field(
        default="auto", metadata={"help": "local backend: auto (bf16 on CUDA), bfloat16, ..."}
    )
    local_files_only: bool = field(
        default=False, metadata={"help": "local backend: never download model files."}
    )
    openai_url: str = field(
        default="", metadata={"help": "openai backend: server base URL (e.g. a vLLM server)."}
    )
    openai_api_key: str = field(default="", metadata={"help": "openai backend: API key."})
    hf_space_url: str = field(
        default="", metadata={"help": "hf-space backend (opt-in; images leave the site)."}
    )
    mock_latency_seconds: float = field(
        default=0.0, metadata={"help": "Mock backend only: simulated seconds per generation."}
    )
    mock_labels: tuple[str, ...] = field(
        default=(),
        metadata={"help": "Mock backend only: CheXpert labels its answer names, for wiring "
                          "tests (empty: the mock asserts nothing)."},
    )
    conversion: str = field(
        default="mimic",
        metadata={"help": "Model input conversion: mimic (training-like) or window (viewer-like)."},
    )
    max_source_pixels: int = field(
        default=64 * 1024 * 1024,
        metadata={"help": "Refuse images with more pixels than this (decompression guard)."},
    )
    gpu_batch_size: int = field(
        default=8, metadata={"help": "GPU worker: most studies in one batched generation."}
    )
    gpu_batch_wait_seconds: float = field(
        default=0.0,
        metadata={"help": "GPU worker: wait this long for a batch to fill (0: take what is "
                          "ready, so batches grow with the backlog)."},
    )
    batch_calling_aets: tuple[str, ...] = field(
        default=(),
        metadata={"help": "Calling AE titles of retrospective batch senders (run after live)."},
    )
    study_quiet_seconds: float = field(
        default=5.0, metadata={"help": "A study is assembled this long after its last instance."}
    )
    heartbeat_seconds: float = field(
        default=5.0, metadata={"help": "How often each process records that it is alive."},
    )
    liveness_timeout_seconds: float = field(
        default=30.0,
        metadata={"help": "Cluster-wide (the gateway's value counts): a process silent this "
                          "long is dead and its jobs are taken over."},
    )
    stage_timeout_seconds: float = field(
        default=3600.0,
        metadata={"help": "Backstop: a stage held this long, even by a live process, is "
                          "taken over."},
    )
    requeue_seconds: float = field(
        default=60.0,
        metadata={"help": "A waiting job whose queue is empty (its message lost) is "
                          "published again after this long."},
    )
    retry_backoff_seconds: float = field(
        default=5.0,
        metadata={"help": "First wait before retrying a delivery or inference; doubles."},
    )
    retry_max_backoff_seconds: float = field(
        default=600.0, metadata={"help": "Longest wait between two retries."},
    )
    delivery_max_attempts: int = field(
        default=12,
        metadata={"help": "Attempts per destination before the job fails (with the backoff: "
                          "about an hour)."},
    )
    inference_max_retries: int = field(
        default=5, metadata={"help": "Retries of a transient backend failure before failing."},
    )
    shutdown_grace_seconds: float = field(
        default=3.0,
        metadata={"help": "On SIGTERM, time to finish cleanly before exiting anyway (in-flight "
                          "work is taken over by others)."},
    )
    worker_name: str = field(
        default="",
        metadata={"help": "This process's name in job timelines; empty = <kind>-<pid>@<host>."},
    )
    poll_seconds: float = field(
        default=0.5, metadata={"help": "Assembler/reconciler tick and embedded broker poll."}
    )
    site_name: str = field(
        default="CXR Reason Gateway research site",
        metadata={"help": "Named in the SR's clinical-trial (research) attributes."},
    )

    def __post_init__(self) -> None:
        if self.conversion not in CONVERSIONS:
            raise SettingsError(f"CXR_CONVERSION must be one of {', '.join(CONVERSIONS)}")
        if canonical(self.model_backend) not in BACKENDS:
            raise SettingsError(f"CXR_MODEL_BACKEND must be one of {', '.join(BACKENDS)}")
        wrong = [lab for lab in self.mock_labels if lab not in CHEXPERT_LABELS]
        if wrong:
            raise SettingsError(f"CXR_MOCK_LABELS: {', '.join(wrong)} not among the 14 "
                                f"CheXpert labels ({', '.join(CHEXPERT_LABELS)})")

    @property
    def tls(self) -> TLSFiles | None:
        if not (self.tls_cert_file or self.tls_key_file):
            return None
        if not (self.tls_cert_file and self.tls_key_file):
            raise SettingsError("TLS needs both CXR_TLS_CERT_FILE and CXR_TLS_KEY_FILE")
        return TLSFiles(Path(self.tls_cert_file), Path(self.tls_key_file),
                        Path(self.tls_ca_file) if self.tls_ca_file else None)

    @property
    def limits(self) -> ListenerLimits:
        return ListenerLimits(
            max_associations=self.max_associations, max_pdu_size=self.max_pdu_size,
            acse_timeout=self.acse_timeout, dimse_timeout=self.dimse_timeout,
            network_timeout=self.network_timeout, min_free_bytes=self.min_free_mb * 2**20,
        )

    @property
    def previews_dir(self) -> Path:
        return self.data_dir / "previews"

    @property
    def spool_dir(self) -> Path:
        return self.data_dir / "spool"

    @property
    def outbox_dir(self) -> Path:
        return self.data_dir / "outbox"

    @property
    def broker_dir(self) -> Path:
        return self.data_dir / "broker"

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'gateway.db').resolve()}"

    @property
    def embedded_broker(self) -> bool:
        return self.broker_url == EMBEDDED_BROKER

    def backend_config(self) -> BackendConfig:
        return BackendConfig(
            name=canonical(self.model_backend), model_id=self.model_id,
            revision=self.model_revision or None, device=self.device, allow_cpu=self.allow_cpu,
            torch_dtype=self.torch_dtype, local_files_only=self.local_files_only,
            mock_latency_seconds=self.mock_latency_seconds, mock_labels=self.mock_labels,
            openai_url=self.openai_url,
            openai_api_key=self.openai_api_key, hf_space_url=self.hf_space_url,
        )

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def _coerce(name: str, annotation: str, raw: Any) -> Any:
    """Turn a file or environment value into the field's type, naming the field on error."""
    try:
        if annotation == "Path":
            return Path(raw)
        if annotation == "bool":
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text not in ("1", "true", "yes", "on", "0", "false", "no", "off", ""):
                raise ValueError("expected true/false")
            return text in ("1", "true", "yes", "on")
        if annotation == "int":
            return int(raw)
        if annotation == "float":
            return float(raw)
        if annotation == "tuple[str, ...]":
            items = raw if isinstance(raw, list) else str(raw).split(",")
            return tuple(s.strip() for s in items if str(s).strip())
        if annotation == "tuple[Destination, ...]":
            text = ",".join(raw) if isinstance(raw, list) else str(raw)
            return parse_destinations(text)
        return str(raw)
    except (TypeError, ValueError) as exc:
        raise SettingsError(f"setting {name}: cannot use {raw!r}: {exc}") from exc


def load_settings(
    config_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Build settings from defaults, an optional TOML file, the environment and overrides."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    path = config_file or (Path(env[f"{ENV_PREFIX}CONFIG_FILE"]) if env.get(
        f"{ENV_PREFIX}CONFIG_FILE") else None)
    fields = {f.name: f for f in dataclasses.fields(Settings)}
    if path is not None:
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise SettingsError(f"config file {path}: {exc}") from exc
        for key, raw in data.items():
            if key not in fields:
                raise SettingsError(f"config file {path}: unknown setting {key!r}")
            values[key] = _coerce(key, str(fields[key].type), raw)
    for name, f in fields.items():
        raw = env.get(ENV_PREFIX + name.upper())
        if raw is not None:
            values[name] = _coerce(ENV_PREFIX + name.upper(), str(f.type), raw)
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Settings(**values)


def settings_table() -> str:
    """Markdown table of every setting, for the README and ``cxr-gateway settings``."""
    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for f in dataclasses.fields(Settings):
        default = f.default
        if isinstance(default, tuple):
            default = ",".join(str(d) for d in default)
        rows.append(f"| `{ENV_PREFIX}{f.name.upper()}` | `{default}` | {f.metadata['help']} |")
    rows.append(f"| `{ENV_PREFIX}CONFIG_FILE` | `` | Optional TOML file with the same keys "
                "(lower case). |")
    return "\n".join(rows)
