"""The catalog features file (tools.catalog_features) as the trainings of heads on it read it."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any


def network_of(data: Any, path: Path) -> str:
    """The network that made the file's vectors (``data``: the file, np.load-ed): what a head
    trained on them must name, since the services refuse features of another network."""
    if "backbone" not in data.files:
        raise SystemExit(f"{path} does not name the network of its vectors: make it again (make features)")
    return str(data["backbone"])


def file_digest(path: Path) -> str:
    """The first ten hex digits of the file's SHA-1: what names a model file's weights."""
    return hashlib.sha1(path.read_bytes()).hexdigest()[:10]
