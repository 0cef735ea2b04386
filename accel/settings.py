"""Every setting of the product, read once from `ACCEL_*` environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ACCEL_", extra="ignore")

    home: Path = Field(Path(".accel"), description="State folder: results store, skills, Prefect home.")
    results: str | None = Field(
        None,
        description="Where results go: a DuckDB file path, or an http(s) URL of the accel API "
        "(remote workers). Default: $ACCEL_HOME/results.duckdb.",
    )
    api_key: SecretStr | None = Field(None, description="API key clients send to the accel API.")
    api_host: str = "127.0.0.1"
    api_port: int = Field(8000, ge=1, le=65535)
    allow_download: bool = Field(
        False, description="Let model resolution download from the Hugging Face Hub when online."
    )
    db_timeout_s: float = Field(
        60.0, gt=0, description="How long a results-store access waits for another process's lock."
    )

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
    def skills_dir(self) -> Path:
        return self.home / "skills"

    @property
    def cache_dir(self) -> Path:
        return self.home / "cache"

    @property
    def prefect_home(self) -> Path:
        return self.home / "prefect"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read from the environment on first use."""
    return Settings()
