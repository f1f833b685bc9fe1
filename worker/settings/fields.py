"""The gateway's settings as one typed, validated model (pydantic-settings).

Every field is a ``CXR_<NAME>`` variable (``name`` in the TOML file) with its default,
its bounds and the sentence the README table shows; validators refuse a value that cannot
be used.  How values are gathered and reported lives in ``worker/settings/loading.py``.
This module imports no DICOM network stack, numpy or PIL: the listener's limits and the
conversion names come from light modules of ``dicom_gateway``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from dicom_gateway.imaging.names import CONVERSIONS
from dicom_gateway.listen.config import ListenerLimits, TLSFiles
from dicom_gateway.transfer.destinations import Destination, parse_destinations
from models.labels import CHEXPERT_LABELS
from models.registry import BACKENDS, BackendConfig, canonical
from worker.settings.types import (
    CommaList,
    DataFolder,
    PositiveSeconds,
    Seconds,
    usable_cores,
)

ENV_PREFIX = "CXR_"
EMBEDDED_BROKER = "embedded"
CONFIG_FILE_VAR = f"{ENV_PREFIX}CONFIG_FILE"


class Settings(BaseSettings):
    """The gateway's settings; ``CXR_<NAME>`` in the environment, ``name`` in the file."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True,
                                      validate_default=True)

    data_dir: Path = Field(Path("var"),
                           description="Spool, outbox, database and embedded broker.")
    ae_title: str = Field("CXRGATEWAY", min_length=1, max_length=16,
                          pattern=r"^[ -\[\]-~]*[!-\[\]-~][ -\[\]-~]*$",
                          description="Our AE title (called AE), 1-16 characters.")
    host: str = Field("127.0.0.1", description="Listener bind address.")
    port: int = Field(11112, ge=1, le=65535, description="Listener TCP port.")
    allowed_calling_aets: CommaList = Field(
        (), description="Comma list of calling AE titles allowed; empty = any.")
    max_associations: int = Field(
        25, ge=1, description="Concurrent associations; more are rejected (transient).")
    max_pdu_size: int = Field(0, ge=0, description="Largest PDU we receive; 0 = no limit.")
    listener_processes: int = Field(  # type: ignore[assignment]  # "auto": see _processes
        "auto", ge=1, le=64,
        description="Listener processes behind the port, each new connection to the one "
        "with fewest open; auto = the cores this process may use (a PACS pushing a backlog "
        "opens several associations at once).")
    association_request_seconds: PositiveSeconds = Field(
        5.0, description="Close a connection that has sent no A-ASSOCIATE-RQ this long "
                         "after connecting; until then it holds no association slot.")
    max_instance_mb: int = Field(
        512, ge=1, description="Refuse a received instance larger than this once inflated "
                               "(deflated datasets are inflated as a stream with this cap), "
                               "MiB.")
    acse_timeout: PositiveSeconds = Field(30.0, description="Association setup timeout (s).")
    dimse_timeout: PositiveSeconds = Field(30.0, description="DIMSE message timeout (s).")
    network_timeout: PositiveSeconds = Field(60.0, description="Idle network timeout (s).")
    min_free_mb: int = Field(
        256, ge=0, description="Answer 0xA700 when the spool has less free disk (MiB).")
    tls_cert_file: str = Field("", description="TLS: server certificate (PEM).")
    tls_key_file: str = Field("", description="TLS: server private key (PEM).")
    tls_ca_file: str = Field("",
                             description="TLS: CA for client certificates (set = required).")
    skipped_retention_hours: Seconds = Field(
        24.0, description="Keep skipped instances' files this long, then delete.")
    destinations: Annotated[tuple[Destination, ...], NoDecode] = Field(
        (), description="Comma list of SR destinations: AE@host:port, reply:PORT (back to "
                        "the sender), or a DICOMweb URL (STOW-RS); each may end in what it "
                        "gets, /sr (default), /page, /sr+page, /sr+page+pdf (#page on a URL), "
                        "and /comprehensive for a Comprehensive SR.")
    destination_sets: Annotated[dict[str, tuple[Destination, ...]], NoDecode] = Field(
        {}, description="Named destination sets a routing rule may send to: in the file a "
                        "[destination_sets] table of name = \"AE@host:port,...\"; in the "
                        "environment name=AE@host:port,...;name2=...")
    rules: Annotated[tuple[dict[str, Any], ...], NoDecode] = Field(
        (), description="Routing rules, first match wins ([[rules]] tables in the file, a "
                        "JSON list in the environment); empty = the built-in admission "
                        "only. See the README's Routing rules.")
    database_url: str = Field(
        "", description="SQLAlchemy URL; empty = SQLite (WAL) in the data dir.")
    broker_url: str = Field(
        EMBEDDED_BROKER,
        description="Celery broker; 'embedded' = file queue in the data dir, or redis://")
    api_host: str = Field("127.0.0.1", description="HTTP API, metrics and dashboard address.")
    api_port: int = Field(8080, ge=0, le=65535,
                          description="HTTP API port; 0 = no HTTP service in serve.")
    api_token: str = Field(
        "", description="The operator token for the API and dashboard, at least 32 "
                        "characters (health and metrics are open); empty = one generated "
                        "into the data dir.")
    api_max_body_kb: int = Field(
        64, ge=1, description="Largest HTTP request body read, KiB (413 past it, refused "
                              "while it arrives, before the token is checked).")
    api_max_header_kb: int = Field(16, ge=1, description="Largest HTTP request head, KiB.")
    api_header_seconds: PositiveSeconds = Field(
        10.0, description="A request's head must have arrived this long after its "
                          "connection opened (or its previous response); else it is closed.")
    api_body_seconds: PositiveSeconds = Field(
        30.0, description="A request's body must have arrived this long after its head "
                          "(408 past it).")
    api_connections_per_client: int = Field(32, ge=1, description="Open HTTP connections "
                                            "one client address may hold (429 past it).")
    api_session_idle_minutes: float = Field(
        30.0, gt=0, description="A dashboard session ends after this long without a request.")
    api_session_hours: float = Field(
        12.0, gt=0, description="A dashboard session ends this long after its login.")
    api_secure_cookie: bool = Field(
        False, description="Mark the session cookie Secure even over plain HTTP (a TLS proxy "
                           "that sends no X-Forwarded-Proto); it is whenever HTTPS is used.")
    api_login_failures: int = Field(
        10, ge=1, description="Failed logins one client address may make in 15 minutes "
                              "before /login answers 429.")
    readers_template: CommaList = Field(
        ("FINDINGS", "IMPRESSION"), description="Reader studies: the report headings a "
        "reader's editor starts with, as the site's template has them (comma list).")
    model_backend: str = Field(
        "mock", description="mock (wiring only, labelled as mock), local, openai or hf-space.")
    model_id: str = Field("nvidia/NV-Reason-CXR-3B", description="Model repository id.")
    model_revision: str = Field(
        "", description="Model revision recorded with every result (and reused by batch "
                        "reruns); empty = the pin for the default model, a local snapshot's "
                        "commit, or what an openai server reports in /v1/models.")
    device: str = Field("auto", description="local backend: auto, cuda[:N], cpu.")
    allow_cpu: bool = Field(False,
                            description="local backend: allow (slow, float32) CPU inference.")
    torch_dtype: str = Field("auto",
                             description="local backend: auto (bf16 on CUDA), bfloat16, ...")
    local_files_only: bool = Field(False,
                                   description="local backend: never download model files.")
    openai_url: str = Field(
        "", description="openai backend: server base URL (e.g. a vLLM server).")
    openai_api_key: str = Field("", description="openai backend: API key.")
    openai_max_in_flight: int = Field(
        4096, ge=1, description="openai backend: the most studies a GPU worker keeps in "
                                "flight on the server; below it the number follows the "
                                "engine (its vLLM gauges, else latency and 429/503).")
    hf_space_url: str = Field("",
                              description="hf-space backend (opt-in; images leave the site).")
    mock_latency_seconds: Seconds = Field(
        0.0, description="Mock backend only: simulated seconds per generation.")
    mock_labels: CommaList = Field(
        (), description="Mock backend only: CheXpert labels its answer names, for wiring "
                        "tests (empty: the mock asserts nothing).")
    conversion: str = Field(
        "mimic", description="Model input conversion: mimic (training-like) or window "
                             "(viewer-like).")
    max_source_pixels: int = Field(
        64 * 1024 * 1024, ge=1,
        description="Refuse images with more pixels than this (decompression guard).")
    gpu_batch_size: int = Field(8, ge=1, description="GPU worker: most studies in one "
                                                     "batched generation.")
    gpu_batch_wait_seconds: Seconds = Field(
        0.0, description="GPU worker: wait this long for a batch to fill (0: take what is "
                         "ready, so batches grow with the backlog).")
    followup_share: float = Field(
        0.5, gt=0.0, le=1.0, description="Most of each GPU batch that follow-up questions "
                                         "take (at least one), so studies always progress.")
    max_open_questions_per_job: int = Field(10, ge=1, description="Questions open on one "
                                            "job at once (429 past it).")
    questions_per_reviewer_per_hour: int = Field(120, ge=1, description="Questions one "
                                                 "caller may ask in an hour (429 past it).")
    batch_calling_aets: CommaList = Field(
        (), description="Calling AE titles of retrospective batch senders (run after live).")
    study_quiet_seconds: Seconds = Field(
        5.0, description="A study is assembled this long after its last instance.")
    heartbeat_seconds: PositiveSeconds = Field(
        5.0, description="How often each process records that it is alive.")
    liveness_timeout_seconds: PositiveSeconds = Field(
        30.0, description="Cluster-wide (the gateway's value counts): a process silent this "
                          "long is dead and its jobs are taken over.")
    stage_timeout_seconds: PositiveSeconds = Field(
        3600.0, description="Backstop: a stage held this long, even by a live process, is "
                            "taken over.")
    requeue_seconds: PositiveSeconds = Field(
        60.0, description="A waiting job whose queue is empty (its message lost) is "
                          "published again after this long.")
    retry_backoff_seconds: PositiveSeconds = Field(
        5.0, description="First wait before retrying a delivery or inference; doubles.")
    retry_max_backoff_seconds: PositiveSeconds = Field(
        600.0, description="Longest wait between two retries.")
    delivery_max_attempts: int = Field(
        12, ge=1, description="Attempts per destination before the job fails (with the "
                              "backoff: about an hour).")
    inference_max_retries: int = Field(
        5, ge=0, description="Retries of a transient backend failure before failing.")
    shutdown_grace_seconds: PositiveSeconds = Field(
        3.0, description="On SIGTERM, time to finish cleanly before exiting anyway "
                         "(in-flight work is taken over by others).")
    worker_name: str = Field(
        "", description="This process's name in job timelines; empty = <kind>-<pid>@<host>.")
    poll_seconds: PositiveSeconds = Field(
        0.5, description="Assembler/reconciler tick and embedded broker poll.")
    source_pacs: str = Field(
        "", description="batch: the archive to query and retrieve from, AE@host:port (it "
                        "must know CXR_AE_TITLE as a C-MOVE destination).")
    site_name: str = Field(
        "CXR Reason Gateway research site",
        description="Named in the SR's clinical-trial (research) attributes.")

    @field_validator("allowed_calling_aets", "batch_calling_aets", "mock_labels",
                     "readers_template", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(s.strip() for s in value.split(",") if s.strip())
        return value

    @field_validator("listener_processes", mode="before")
    @classmethod
    def _processes(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() == "auto":
            return usable_cores()
        return value

    @field_validator("destinations", mode="before")
    @classmethod
    def _destinations(cls, value: Any) -> Any:
        if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
            value = ",".join(value)
        return parse_destinations(value) if isinstance(value, str) else value

    @field_validator("destination_sets", mode="before")
    @classmethod
    def _destination_sets(cls, value: Any) -> Any:
        if isinstance(value, str):  # the environment: name=list;name2=list
            pairs = [p.split("=", 1) for p in value.split(";") if p.strip()]
            if any(len(p) != 2 for p in pairs):
                raise ValueError("expected name=AE@host:port,...;name2=...")
            value = {k.strip(): v for k, v in pairs}
        if isinstance(value, dict):
            out = {}
            for name, text in value.items():
                if isinstance(text, list | tuple) and all(isinstance(t, str) for t in text):
                    text = ",".join(text)
                dests = parse_destinations(text) if isinstance(text, str) else text
                if not dests or len(str(name)) > 64:  # the name is recorded on each job
                    raise ValueError(f"destination set {name!r}: empty, or a name over 64 "
                                     "characters")
                out[str(name)] = dests
            return out
        return value

    @field_validator("rules", mode="before")
    @classmethod
    def _rules_list(cls, value: Any) -> Any:
        if isinstance(value, str):  # the environment: a JSON list of rule objects
            import json

            try:
                value = json.loads(value) if value.strip() else []
            except ValueError as exc:
                raise ValueError(f"not a JSON list of rules: {exc}") from None
        if isinstance(value, dict):
            raise ValueError("a list of rule tables ([[rules]]), not one table")
        return value

    @model_validator(mode="after")
    def _rules_shape(self) -> Settings:
        """The rules' shape (keys, actions, syntax, destination sets); the tag keywords
        are checked against pydicom's dictionary where rules are used
        (``worker.ingest.routing.rules_of``), so that reading settings loads no DICOM
        library."""
        if self.rules:
            from dicom_gateway.routing.building import build_rule_set, refusal
            from dicom_gateway.routing.conditions import any_field

            problems = build_rule_set(list(self.rules), self.destination_sets,
                                      check=any_field)[1]
            if problems:
                raise ValueError(refusal(problems))
        return self

    @field_validator("model_backend")
    @classmethod
    def _backend(cls, value: str) -> str:
        if canonical(value) not in BACKENDS:
            raise ValueError(f"must be one of {', '.join(BACKENDS)}")
        return value

    @field_validator("conversion")
    @classmethod
    def _conversion(cls, value: str) -> str:
        if value not in CONVERSIONS:
            raise ValueError(f"must be one of {', '.join(CONVERSIONS)}")
        return value

    @field_validator("mock_labels")
    @classmethod
    def _labels(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        wrong = [lab for lab in value if lab not in CHEXPERT_LABELS]
        if wrong:
            raise ValueError(f"{', '.join(wrong)} not among the 14 CheXpert labels "
                             f"({', '.join(CHEXPERT_LABELS)})")
        return value

    @model_validator(mode="after")
    def _tls_pair(self) -> Settings:
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ValueError("TLS needs both CXR_TLS_CERT_FILE and CXR_TLS_KEY_FILE")
        return self

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Only what ``load_settings`` passes in: it reads the environment and the file
        itself, so that it can say where each value came from."""
        return (init_settings,)

    # -- derived values ------------------------------------------------------------------

    @property
    def tls(self) -> TLSFiles | None:
        if not self.tls_cert_file:
            return None
        return TLSFiles(Path(self.tls_cert_file), Path(self.tls_key_file),
                        Path(self.tls_ca_file) if self.tls_ca_file else None)

    @property
    def limits(self) -> ListenerLimits:
        return ListenerLimits(
            max_associations=self.max_associations, max_pdu_size=self.max_pdu_size,
            acse_timeout=self.acse_timeout, dimse_timeout=self.dimse_timeout,
            network_timeout=self.network_timeout, min_free_bytes=self.min_free_mb * 2**20,
            max_instance_bytes=self.max_instance_mb * 2**20,
            association_request_seconds=self.association_request_seconds,
        )

    previews_dir = DataFolder("previews")
    spool_dir = DataFolder("spool")
    outbox_dir = DataFolder("outbox")
    broker_dir = DataFolder("broker")

    @property
    def database_file(self) -> Path | None:
        """The SQLite file of the default database (None when a URL is set)."""
        return None if self.database_url else (self.data_dir / "gateway.db").resolve()

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.database_file}"

    @property
    def embedded_broker(self) -> bool:
        return self.broker_url == EMBEDDED_BROKER

    def destination_set(self, name: str) -> tuple[Destination, ...]:
        """A rule's destination set by name; "" (or a set no longer configured) = the
        default destinations."""
        return self.destination_sets.get(name, self.destinations) if name else \
            self.destinations

    def destinations_by_name(self, recorded: str = "") -> dict[str, Destination]:
        """Every configured destination (the default list and every set) by its text, as
        a delivery row names it; plus ``recorded``, the comma list a job's rule chose when
        it was routed (a set a rules reload added after this process started)."""
        everything = [*(parse_destinations(recorded) if recorded else ()),
                      *self.destinations,
                      *(d for ds in self.destination_sets.values() for d in ds)]
        return {str(d): d for d in everything}

    def backend_config(self) -> BackendConfig:
        return BackendConfig(
            name=canonical(self.model_backend), model_id=self.model_id,
            revision=self.model_revision or None, device=self.device, allow_cpu=self.allow_cpu,
            torch_dtype=self.torch_dtype, local_files_only=self.local_files_only,
            mock_latency_seconds=self.mock_latency_seconds, mock_labels=self.mock_labels,
            openai_url=self.openai_url, openai_api_key=self.openai_api_key,
            hf_space_url=self.hf_space_url,
        )

    def replace(self, **changes: Any) -> Settings:
        """A copy with some values changed (internal use: not validated again)."""
        return self.model_copy(update=changes)
