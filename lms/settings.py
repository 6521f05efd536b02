"""Configuration read from the environment (prefix ``LMS_``) with embedded defaults."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LMS_", extra="ignore")

    # Unset means "start the embedded PostgreSQL under data_dir" (see lms.db).
    database_url: str | None = None
    # Unset means kombu's filesystem transport under data_dir (see lms.worker).
    broker_url: str | None = None
    data_dir: Path = PROJECT_ROOT / ".lms-data"

    environment: str = "development"
    log_level: str = "INFO"
    log_json: bool = False
    public_base_url: str = "http://127.0.0.1:8000"

    db_pool_size: int = 20
    db_max_overflow: int = 20
    # Connections per process for the money path (lms.connection_pool: the hot writes, their
    # key checks, balance reads, group commit). Few: PostgreSQL does more work a second with
    # a few busy backends than with dozens contending for its cores, WAL and hot rows
    # (docs/performance.md, HTTP load). Requests beyond it wait in the process, not the
    # server. A server with more cores than the API's processes times this can take more.
    db_raw_pool_size: int = 4
    # Bounded retry of a whole unit of work on serialization failure or deadlock.
    db_retry_attempts: int = 5

    access_token_ttl_seconds: int = 8 * 3600
    login_max_failures: int = 5
    login_lockout_seconds: int = 15 * 60

    # Hot system accounts (issuance, breakage, ...) are split into this many sub-accounts so
    # that concurrent credits do not queue on one balance row.
    system_account_shards: int = 16
    lot_validity_months: int = 36
    hold_max_ttl_seconds: int = 7 * 24 * 3600
    card_number_prefix: str = "7"

    # Web pages (lms.web): server-side sessions, their cookies and the password-reset mail.
    # Cookies are Secure unless this is turned off, which only plain-http local development
    # needs (browsers treat http://127.0.0.1 and http://localhost as secure, so even the
    # demo works with the default).
    web_cookie_secure: bool = True
    web_session_idle_seconds: int = 30 * 60
    web_session_absolute_seconds: int = 12 * 3600
    password_reset_ttl_seconds: int = 3600
    # Unset host: the reset mail is written to the worker's log instead of sent (the demo).
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    mail_from: str = "LMS Miles <no-reply@lms.example>"

    # Member consent to partner redemptions (lms.redemption): codes are kept only as an
    # HMAC-SHA256 under this secret; set a long random value in every real deployment.
    redemption_code_secret: str = "development-only-redemption-secret"
    redemption_code_ttl_seconds: int = 600
    # This many wrong codes for one card within the window lock its redemption for a while.
    redemption_max_failures: int = 5
    redemption_failure_window_seconds: int = 30 * 60
    redemption_lock_seconds: int = 30 * 60

    # The payment provider (by default the fake one that `./dev run` starts; see
    # lms.payments). Webhooks are signed with this shared secret; the demo default must be
    # replaced in any real deployment.
    payment_provider_url: str = "http://127.0.0.1:8090"
    payment_webhook_secret: str = "demo-webhook-secret-not-for-production"
    payment_webhook_tolerance_seconds: int = 300
    payment_provider_timeout_seconds: float = 10.0
    # A purchase not paid within this time expires (purchases.expire_pending).
    purchase_pending_ttl_seconds: int = 1800

    # Apple Wallet (lms.wallet). Unset certificate paths mean the development chain that
    # ``lms wallet dev-certs`` writes under data_dir/wallet (generated on first use): passes
    # signed with it install nowhere but are complete and verifiable.
    apple_pass_type_identifier: str = "pass.com.example.lms.card"
    apple_team_identifier: str = "LMSDEVTEAM"
    apple_organization_name: str = "LMS Airlines"
    apple_pass_cert: Path | None = None
    apple_pass_key: Path | None = None
    apple_pass_key_password: SecretStr | None = None
    apple_wwdr_cert: Path | None = None
    # Base of the PassKit web service written into passes; default public_base_url/v1/passkit.
    apple_web_service_url: str | None = None
    # APNs with token authentication (an ES256 .p8 key). Without a key no push is sent:
    # devices still see changes when they next ask for them.
    apns_host: str = "api.push.apple.com"
    apns_key: Path | None = None
    apns_key_id: str = ""
    # Team of the APNs key; default apple_team_identifier.
    apns_team_id: str | None = None
    # CA bundle that the APNs host's certificate must chain to; unset means the system's.
    apns_ca_bundle: Path | None = None
    apns_timeout_seconds: float = 10.0
    # Changes to one pass within this window lead to one push per device.
    wallet_push_window_seconds: float = 10.0
    wallet_sync_max_attempts: int = 8

    # Google Wallet. The service-account key file is Google's JSON (client_email,
    # private_key); unset means the development key under data_dir/wallet, which signs save
    # links but is not used for the REST API (no updates are sent to Google with it).
    google_wallet_issuer_id: str = "3388000000000000000"
    google_wallet_class_suffix: str = "lms-loyalty"
    google_service_account_file: Path | None = None
    google_token_uri: str = "https://oauth2.googleapis.com/token"
    google_wallet_api_base: str = "https://walletobjects.googleapis.com/walletobjects/v1"
    # Origins allowed to show the save button; default public_base_url.
    google_wallet_origins: list[str] = []
    google_timeout_seconds: float = 10.0


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
