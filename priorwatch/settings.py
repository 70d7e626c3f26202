"""Settings: `PRIORWATCH_*` environment variables or a TOML file, never code edits.

The embedded default needs nothing: SQLite and a filesystem Celery broker in the data dir
and a local Triton. Server mode is the same code with `database_url`, `broker_url` and
`triton_url` set.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


def _default_data_dir() -> Path:
    return Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share")) / "priorwatch"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="PRIORWATCH_", env_nested_delimiter="__", extra="ignore"
    )

    data_dir: Path = Field(default_factory=_default_data_dir)
    database_url: str | None = None  # default: sqlite in data_dir
    broker_url: str | None = None  # default: kombu filesystem transport in data_dir
    queue_name: str = "priorwatch"

    # DICOM node
    ae_title: str = "PRIORWATCH"
    dicom_host: str = "127.0.0.1"
    dicom_port: int = 11112
    allowed_calling_aes: list[str] = Field(default_factory=list)  # empty: accept any calling AE
    # Calling AEs whose sends are priors (an archive, or our own C-MOVE/C-GET): filed, no job.
    prior_source_aes: list[str] = Field(default_factory=list)
    fsync: bool = True  # durable before the C-STORE success response
    # Processes receiving C-STORE on the one port (parallel associations use several cores);
    # 0: one per core, at most 4.
    receive_processes: int = 0
    completion_grace_s: float = 2.0  # after the sender releases, wait this long for more
    quiet_period_s: dict[str, float] = Field(
        default_factory=lambda: {"CR": 60.0, "DX": 60.0, "CT": 120.0, "MR": 180.0, "default": 90.0}
    )
    monitor_interval_s: float = 0.25
    # Starvation limits (dicom_node.guard): the association limits are node-wide (every receiving
    # process shares them, dicom_node.assoc_slots); connections still negotiating do not count
    # against them and cannot hold them.
    dicom_max_pdu_bytes: int = 16 << 20  # our maximum receive PDU; longer claims are aborted at once
    dicom_pdu_timeout_s: float = 30.0  # a PDU must arrive whole within this of its first byte
    dicom_artim_timeout_s: float = 10.0  # a connection must send its association request within this
    dicom_max_associations: int = 32  # established associations at once
    dicom_max_associations_per_peer: int = 16  # established associations at once from one address
    # How the node accepts associations: "lean" (dicom_node.lean: the node's own upper layer for
    # Verification and Storage SCP only) or "pynetdicom" (its upper layer, patched by
    # dicom_node.netfast). A node with TLS on uses pynetdicom's whatever this says.
    node_accept: Literal["pynetdicom", "lean"] = "lean"
    dicom_idle_timeout_s: float = 60.0  # lean accept path: an established association silent this long is aborted
    # DICOM TLS (node and our SCU/retrievals): PEM files. A set cert+key turns TLS on for the node's
    # port; pacs_tls turns it on towards the PACS (our cert/key as client certificate if set).
    dicom_tls_cert: Path | None = None
    dicom_tls_key: Path | None = None
    dicom_tls_ca: Path | None = None  # trust anchors for peers' certificates
    dicom_tls_require_client_cert: bool = True  # the node refuses TLS clients without a CA-signed cert
    # Client certificate subject CN -> the calling AE titles it may use, e.g. {"CR01": ["CR01"]}:
    # a certificate may then associate only as its own AEs, and one not listed not at all. Empty:
    # any certificate from dicom_tls_ca may use any allowed calling AE. Needs TLS with client certs.
    dicom_tls_client_aes: dict[str, list[str]] = Field(default_factory=dict)

    # PACS for priors and results (None: the node's own store answers for priors)
    pacs_ae_title: str | None = None
    pacs_host: str = "127.0.0.1"
    pacs_port: int = 104
    pacs_query_model: str = "study"  # study | patient (C-FIND information model root)
    pacs_query: str = "dimse"  # dimse (C-FIND) | qido (QIDO-RS)
    pacs_retrieve: str = "c-get"  # c-get | c-move | wado-rs
    pacs_dicomweb_url: str | None = None
    pacs_timeout_s: float = 30.0
    pacs_tls: bool = False  # DICOM TLS to the PACS (dicom_tls_ca verifies it)
    pacs_tls_hostname: str | None = None  # name its certificate must carry; None: pacs_host
    # A PACS that cannot be reached keeps the job waiting (back-off doubling up to
    # pacs_retry_max_s) for this long since the job's first attempt; only then "no prior".
    pacs_wait_window_s: float = 24 * 3600.0
    pacs_retry_max_s: float = 300.0
    prior_baseline: bool = False  # the baseline may be anywhere in lookback_days, not only within history_horizon_days
    send_sr_to_pacs: bool = False
    urgent_webhook_url: str | None = None

    # Workers
    lookback_days: int = 3650
    # The relevant history (issue 29): the most recent comparable prior (within lookback_days), the oldest
    # comparable study within history_horizon_days as the baseline (2 years: a solid nodule stable that long
    # needs no more follow-up), and at most history_max_between studies between them, spread evenly in time
    # (enough to see a trend; each costs one more comparison). 0 between and a horizon of 0: one prior only.
    history_horizon_days: int = Field(default=730, ge=0)
    history_max_between: int = Field(default=3, ge=0)
    # Comparisons of the history run this many at a time after the first (the local Triton serves two
    # instances of the registration model): the history then costs about two comparisons, not one per prior.
    history_parallel: int = Field(default=2, ge=1)
    worker_concurrency: int = 1
    task_max_retries: int = 5
    task_retry_backoff_s: float = 2.0
    task_retry_backoff_max_s: float = 60.0
    # Leases: a running job's worker refreshes its lease every heartbeat; a lease not refreshed
    # for lease_ttl_s means the worker died, and the sweeper hands the job out again.
    lease_ttl_s: float = 60.0
    lease_heartbeat_s: float = 10.0
    # A job handed to the broker but not started after this long is sent again (a broker that
    # lost its messages: Redis without persistence, a filesystem message taken by a dead worker).
    job_start_timeout_s: float = 300.0
    sweep_interval_s: float = 5.0  # how often the sweeper looks for lost jobs and due deliveries
    # Outbox deliveries (SR, urgent webhook): exponential back-off, then `failed` with the reason.
    delivery_backoff_s: float = 2.0
    delivery_backoff_max_s: float = 300.0
    delivery_max_attempts: int = 12
    delivery_claim_s: float = 120.0  # a sender that died mid-send releases the row after this
    urgent_webhook_secret: str | None = None  # HMAC-SHA256 key for the webhook's signature header
    webhook_timeout_s: float = 10.0
    # serve's supervisor: restart a dead child after this back-off (doubling, capped).
    restart_backoff_s: float = 0.5
    restart_backoff_max_s: float = 30.0

    # Comparison / Triton
    triton_url: str | None = None  # gRPC host:port of a remote Triton; None starts a local one
    triton_grpc_port: int = 18001
    triton_http_port: int = 18000
    triton_metrics_port: int = 18002
    triton_timeout_s: float = 120.0
    engine: str = "registration"  # registration | vlm (VLM draft, guarded by registration evidence)
    # VLM (read by the Triton model from PRIORWATCH_VLM_* too): a local HF image-text-to-text folder.
    vlm_model_dir: Path | None = None
    vlm_dtype: str = "auto"
    vlm_device: str = "cpu"
    vlm_max_new_tokens: int = 384
    vlm_family: str = "auto"  # auto | gemma3 | medgemma | maira2 | llava
    vlm_trust_remote_code: bool = False
    vlm_timeout_s: float = 120.0
    vlm_retries: int = 2
    vlm_backoff_s: float = 0.5
    triton_startup_timeout_s: float = 180.0
    image_size: int = 512  # long side, pixels, of the arrays sent to engines

    # Dashboard sessions, claims and login throttling (dashboard.security).
    dashboard_secret: str | None = None  # HMAC key for session cookies; None: a 0600 file in data_dir
    dashboard_idle_timeout_s: float = 15 * 60.0  # a session unused this long is ended (reading-room policy)
    dashboard_session_max_s: float = 12 * 3600.0  # absolute session lifetime: one shift
    dashboard_claim_ttl_s: float = 20 * 60.0  # an opened study stays claimed this long without activity
    dashboard_cookie_secure: bool = False  # set True behind HTTPS so the cookie never travels in clear
    # Login throttling (rule in dashboard.security's docstring): it slows the guesser and never
    # locks an account because of failures under other names or from other addresses.
    login_max_failures_per_pair: int = 5  # wrong passwords for one name from one address before that pair is locked
    login_max_failures_per_address: int = 20  # failures from one address (any names): then each name gets one try
    login_failure_window_s: float = 15 * 60.0  # failures older than this are forgotten
    login_lockout_s: float = 15 * 60.0  # how long a lockout lasts (an admin can lift it: `priorwatch user unlock`)
    # The dashboard's own origin(s) as browsers see them, e.g. "https://pw.example.org": its
    # WebSocket and every POST accept only these (another port of the same host is another
    # origin). Empty: what it serves, http://<address>:<port> (and localhost/127.0.0.1 on a
    # loopback bind). Comma-separated or a JSON list.
    dashboard_public_url: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Reverse proxies (addresses or CIDR networks) whose X-Forwarded-For names the client for
    # login throttling and the audit; empty: none, the TCP peer is the client and a forged header
    # is ignored. Comma-separated or a JSON list.
    dashboard_trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # Deployment: workers without a shared disk, health and metrics over HTTP (README "Ports").
    # shared: a worker reads the node's spool paths (one machine, the embedded default);
    # node: it fetches the study's instances from the node's HTTP store service (node_url) into
    # its own data dir, and deletes them when the job ends.
    worker_fetch: str = "shared"
    node_url: str | None = None  # the node's HTTP service as workers reach it, e.g. http://node:11180
    node_token: str | None = None  # shared secret (Bearer) for the node's store; required for node fetch
    node_http_host: str = "127.0.0.1"
    node_http_port: int | None = None  # node: instances for workers, /livez, /readyz, /metrics; None: off
    worker_http_host: str = "127.0.0.1"
    worker_http_port: int | None = None  # a worker's /livez, /readyz, /metrics; None: off
    node_fetch_timeout_s: float = 30.0  # one instance over the node's HTTP store
    # A password file (a compose secret) filled into database_url, so no password sits in env files.
    database_password_file: Path | None = None

    @field_validator("dashboard_public_url", "dashboard_trusted_proxies", mode="before")
    @classmethod
    def _comma_list(cls, v: Any) -> Any:
        """An env var holds "a,b" or the JSON list `as_env` writes; TOML gives a list."""
        if isinstance(v, str):
            s = v.strip()
            if s.startswith("["):
                import json

                return json.loads(s)
            return [p.strip() for p in s.split(",") if p.strip()]
        return v

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        toml = os.environ.get("PRIORWATCH_CONFIG")
        if toml:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(toml)))
        return tuple(sources)

    # Derived locations ------------------------------------------------------------------
    @property
    def spool_dir(self) -> Path:
        return self.data_dir / "spool"

    @property
    def results_dir(self) -> Path:
        return self.data_dir / "results"

    @property
    def resolved_database_url(self) -> str:
        url = self.database_url or f"sqlite:///{self.data_dir / 'priorwatch.db'}"
        if self.database_password_file is not None and self.database_url:
            from sqlalchemy.engine import make_url

            password = self.database_password_file.read_text().strip()
            url = make_url(url).set(password=password).render_as_string(hide_password=False)
        return url

    @property
    def resolved_broker_url(self) -> str:
        return self.broker_url or "filesystem://"

    @property
    def broker_dir(self) -> Path:
        return self.data_dir / "broker"

    def quiet_period_for(self, modality: str | None) -> float:
        return self.quiet_period_s.get(modality or "", self.quiet_period_s.get("default", 90.0))

    def ensure_dirs(self) -> None:
        for d in (self.data_dir, self.spool_dir, self.results_dir, self.broker_dir):
            d.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Patient data: only the service account may read the data dir and the spool.
        for d in (self.data_dir, self.spool_dir):
            if d.stat().st_uid == os.getuid() and d.stat().st_mode & 0o077:
                d.chmod(0o700)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def reset_settings_cache() -> None:
    get_settings.cache_clear()


def as_env(settings: Settings) -> dict[str, Any]:
    """The environment a child process needs to see the same settings."""
    env: dict[str, Any] = {}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        key = f"PRIORWATCH_{name.upper()}"
        if isinstance(value, (list, dict)):
            import json

            env[key] = json.dumps(value)
        else:
            env[key] = str(value)
    return env
