"""Settings every service shares; each service subclasses this with its own env prefix."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore")

    host: str = Field(default="127.0.0.1", description="Interface to listen on")
    port: int = Field(default=8000, ge=1, le=65535, description="Port to listen on")
    log_level: str = Field(default="INFO", description="Python log level of the service logger")
    inference_threads: int = Field(default=2, ge=1, description="Threads running model or index work")
    max_waiting: int = Field(
        default=64, ge=0, description="Calls allowed to wait for a thread before answering 503"
    )
