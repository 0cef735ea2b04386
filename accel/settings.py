"""Every setting of the product, read once from `ACCEL_*` environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ACCEL_", extra="ignore", populate_by_name=True)

    home: Path = Field(Path(".accel"), description="State folder: results store, skills, Prefect home.")
    results: str | None = Field(
        None,
        description="Where results go: a DuckDB file path, or an http(s) URL of the accel API "
        "(remote workers). Default: $ACCEL_HOME/results.duckdb.",
    )
    skills: Path | None = Field(None, description="Where generated skills go (default $ACCEL_HOME/skills).")
    models_dir: Path | None = Field(
        None, description="A folder of model directories the API lists and accepts as model refs (ACCEL_MODELS_DIR)."
    )
    api_key: SecretStr | None = Field(
        None, description="API key clients send to the accel API (default: $ACCEL_HOME/admin.key when readable)."
    )
    api_host: str = "127.0.0.1"
    api_port: int = Field(8000, ge=1, le=65535)
    auth: bool = Field(
        True, description="ACCEL_AUTH=off turns API keys off: allowed only while ACCEL_API_HOST is loopback."
    )
    gateway_secret: SecretStr | None = Field(
        None,
        description="Shared with the accel gateway: a request carrying it is taken as the principal the gateway "
        "authenticated (X-Accel-Principal); without it those headers are ignored.",
    )
    cors_origins: str | None = Field(
        None, description="Comma-separated origins browsers may call the API from; unset: none (CORS closed)."
    )
    rate_limit_per_minute: int = Field(
        120, ge=0, description="POSTs per minute per API key (a token bucket of that size); 0 turns it off."
    )
    allow_download: bool = Field(
        False, description="Let model resolution download from the Hugging Face Hub when online."
    )
    prefect_api_url: str = Field(
        "http://127.0.0.1:4200/api",
        validation_alias=AliasChoices("PREFECT_API_URL", "prefect_api_url"),
        description="Prefect's API (Prefect's own PREFECT_API_URL); the default is where `accel up` starts it.",
    )
    db_timeout_s: float = Field(
        60.0, gt=0, description="How long a results-store access waits for another process's lock."
    )
    # The unified gateway (api/gateway.py): a component forwarded to its own service, ACCEL_UPSTREAM_<COMPONENT>.
    upstream_test: str | None = Field(None, description="URL of the test component's service (forwarded there).")
    upstream_generator: str | None = Field(None, description="URL of the generator component's service.")
    upstream_benchmark: str | None = Field(None, description="URL of the benchmark component's service.")
    upstream_results: str | None = Field(None, description="URL of the results component's service.")
    upstream_timeout_s: float = Field(
        60.0, gt=0, description="How long the gateway waits on an upstream (connect, each read) before a 504."
    )

    @field_validator("upstream_test", "upstream_generator", "upstream_benchmark", "upstream_results")
    @classmethod
    def _upstream_url(cls, url: str | None) -> str | None:
        if url is None or not url.strip():
            return None
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"{url!r} is not an http(s) URL of an accel component service (http://host:port)")
        return url.rstrip("/")

    @property
    def upstreams(self) -> dict[str, str]:
        """component -> URL of the service it is forwarded to (the ACCEL_UPSTREAM_<COMPONENT> that are set)."""
        named = {
            "test": self.upstream_test,
            "generator": self.upstream_generator,
            "benchmark": self.upstream_benchmark,
            "results": self.upstream_results,
        }
        return {component: url for component, url in named.items() if url}

    @field_validator("home")
    @classmethod
    def _absolute_home(cls, home: Path) -> Path:
        return home.expanduser().resolve()

    @property
    def results_path(self) -> Path:
        """The DuckDB file results are written to on this machine."""
        if self.results and not self.results.startswith(("http://", "https://")):
            return Path(self.results).expanduser().resolve()
        return self.home / "results.duckdb"

    @property
    def results_url(self) -> str | None:
        """The accel API results are sent to (ACCEL_RESULTS=http://...), or None when they go to a file."""
        if self.results and self.results.startswith(("http://", "https://")):
            return self.results.rstrip("/")
        return None

    @property
    def prefect_ui_url(self) -> str:
        """Prefect's UI: its API URL without the trailing /api."""
        return self.prefect_api_url.rstrip("/").removesuffix("/api")

    @property
    def skills_dir(self) -> Path:
        return self.skills.expanduser().resolve() if self.skills else self.home / "skills"

    @property
    def cache_dir(self) -> Path:
        return self.home / "cache"

    @property
    def prefect_home(self) -> Path:
        return self.home / "prefect"

    @property
    def ops_path(self) -> Path:
        """The SQLite file of operational data (API keys)."""
        return self.home / "ops.sqlite"

    @property
    def admin_key_path(self) -> Path:
        """Where `accel up` writes the admin key it creates (readable by its owner only)."""
        return self.home / "admin.key"

    @property
    def cors_origin_list(self) -> list[str]:
        return [o.strip() for o in (self.cors_origins or "").split(",") if o.strip()]

    def client_api_key(self) -> str | None:
        """The key clients here send: ACCEL_API_KEY, else the admin key `accel up` left in ACCEL_HOME (a file
        only its owner can read, so only that user's processes find it)."""
        if self.api_key is not None:
            return self.api_key.get_secret_value()
        try:
            return self.admin_key_path.read_text().strip() or None
        except OSError:
            return None


def describe_invalid(err: ValidationError) -> str:
    """A bad ACCEL_* value in one line: which variable, and what is accepted."""
    return "; ".join(
        f"ACCEL_{'_'.join(map(str, e['loc'])).upper()}: {e['msg'].removeprefix('Value error, ')}" for e in err.errors()
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read from the environment on first use."""
    return Settings()


def project_root() -> Path | None:
    """The checkout holding prefect.yaml and nightly.yaml: $ACCEL_PROJECT_DIR, else the folder above this
    package when accel runs from a checkout (an editable install); None for a plain wheel install."""
    import os

    if os.environ.get("ACCEL_PROJECT_DIR"):
        return Path(os.environ["ACCEL_PROJECT_DIR"]).expanduser().resolve()
    candidate = Path(__file__).resolve().parent.parent
    return candidate if (candidate / "prefect.yaml").is_file() else None
