"""Settings every service shares; each service subclasses this with its own env prefix."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import ClassVar

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.features import file_digest


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore")

    host: str = Field(default="127.0.0.1", description="Interface to listen on")
    port: int = Field(default=8000, ge=1, le=65535, description="Port to listen on")
    log_level: str = Field(default="INFO", description="Python log level of the service logger")
    inference_threads: int = Field(default=2, ge=1, description="Threads running model or index work")
    max_waiting: int = Field(
        default=64, ge=0, description="Calls allowed to wait for a thread before answering 503"
    )

    # settings that change how the service runs, not what it answers: replicas may differ in them
    running_fields: ClassVar[frozenset[str]] = frozenset(
        {
            "host",
            "port",
            "log_level",
            "inference_threads",
            "max_waiting",
            "model_threads",
            "max_batch",
            "max_upload_bytes",
            "max_pixels",
        }
    )

    def model_version(self, files: Iterable[Path]) -> str:
        """What the service's answers are made by: a digest of its model files' bytes and of every
        setting but the running ones and the paths (where a file lies is not what it holds). /readyz
        tells it, and the gateway keys whole answers by it, so a retrained model or a changed
        threshold is never hidden behind an answer of the old."""
        digest = hashlib.sha1()
        for path in sorted(files, key=lambda p: p.name):
            digest.update(f"{path.name}:{file_digest(path)};".encode())
        paths = {name for name, value in self if isinstance(value, Path)}
        answering = self.model_dump(mode="json", exclude=set(self.running_fields) | paths)
        digest.update(json.dumps(answering, sort_keys=True).encode())
        return digest.hexdigest()[:12]
