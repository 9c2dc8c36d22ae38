"""All settings, read once from `REELGATE_*` environment variables.

Every variable is documented in the README's configuration table; a test
fails when the two disagree. Defaults are the embedded demo's: they work on a
laptop with nothing installed and are never safe for production (the demo
secrets below are marked as such).
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEMO_BILLING_SECRET = "demo-billing-secret-change-me"  # demo default, not a secret
DEMO_SERVICE_KEY = "demo-service-key-change-me"  # demo default, not a secret


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="REELGATE_", extra="ignore")

    var_dir: Path = Field(Path("var"), description="Working directory for demo data, keys, mail")
    database_url: str = Field("", description="SQLAlchemy URL used by both services")
    catalog_database_url: str = ""
    entitlements_database_url: str = ""
    redis_url: str = Field("", description="redis://host:port/db; empty = in-process (demo)")
    storage_url: str = ""
    s3_endpoint_url: str = Field("", description="S3-compatible endpoint for s3:// storage")
    smtp_url: str = ""
    mail_from: str = "Reelgate <noreply@reelgate.local>"
    public_url: str = Field(
        "http://127.0.0.1:8080", description="Where users reach the web player (links in e-mails)"
    )

    admin_email: str = ""
    admin_password: str = ""

    billing_secret: str = DEMO_BILLING_SECRET
    service_key: str = DEMO_SERVICE_KEY

    jwt_private_key_file: Path | None = None
    jwt_public_key_file: Path | None = None
    jwt_issuer: str = "reelgate"
    access_token_ttl_s: int = 900
    refresh_token_ttl_s: int = 30 * 24 * 3600
    playback_token_ttl_s: int = 6 * 3600
    heartbeat_interval_s: int = 30

    login_max_per_account: int = 5
    login_max_per_address: int = 30
    login_window_s: int = 60

    entitlement_cache_ttl_s: int = 60
    entitlement_local_ttl_s: float = 1.0
    entitlement_stale_grace_s: float = 30.0
    entitlements_url: str = "http://127.0.0.1:8002"
    catalog_url: str = "http://127.0.0.1:8001"

    password_memory_kib: int = 19456  # OWASP baseline for Argon2id (m=19 MiB, t=2)
    password_time_cost: int = 2

    billing_period_days: int = 30
    max_body_bytes: int = 1024 * 1024
    max_upload_bytes: int = 20 * 1024**3
    trust_forwarded_for: bool = False

    media_sendfile: bool = True

    host: str = "127.0.0.1"
    port: int = 8080
    log_level: str = "INFO"

    # Catalog: media ingest tools and the outbox relay.
    ffmpeg_path: str = "ffmpeg"
    ffprobe_path: str = "ffprobe"
    media_tool_timeout_s: float = 120.0
    # Each ingest runs ffprobe and two ffmpeg decodes; more at once than the
    # machine has cores for only makes every upload slower.
    ingest_concurrency: int = Field(2, ge=1, description="Ingests probing/decoding at once")
    poster_width: int = 640
    outbox_poll_interval_s: float = 0.5

    @field_validator("database_url", "catalog_database_url", "entitlements_database_url")
    @classmethod
    def _strip(cls, value: str) -> str:
        return value.strip()

    @cached_property
    def resolved_var_dir(self) -> Path:
        return self.var_dir.resolve()

    def database_url_for(self, service: str) -> str:
        """The URL a service uses: its own override, else the shared one, else demo SQLite."""
        specific = {
            "catalog": self.catalog_database_url,
            "entitlements": self.entitlements_database_url,
        }.get(service, "")
        url = specific or self.database_url
        if not url:
            url = f"sqlite+aiosqlite:///{self.resolved_var_dir / 'reelgate.db'}"
        return normalize_database_url(url)

    @property
    def resolved_storage_url(self) -> str:
        """Where media objects live: REELGATE_STORAGE_URL, else VAR_DIR/media."""
        return self.storage_url or str(self.resolved_var_dir / "media")

    @property
    def private_key_path(self) -> Path:
        return self.jwt_private_key_file or self.resolved_var_dir / "keys" / "jwt-ed25519.pem"


def normalize_database_url(url: str) -> str:
    """Accept the URL spellings operators use and pick the async driver."""
    for prefix in ("postgres://", "postgresql://", "postgresql+psycopg2://", "postgresql+psycopg://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    if url.startswith("sqlite://") and not url.startswith("sqlite+aiosqlite://"):
        return "sqlite+aiosqlite://" + url[len("sqlite://") :]
    return url


def load_settings(**overrides: object) -> Settings:
    return Settings(**overrides)  # type: ignore[arg-type]
