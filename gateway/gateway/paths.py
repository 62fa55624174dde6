"""Where product images live: catalog images relative to GATEWAY_CATALOG_DIR, images that came
through the catalog API relative to GATEWAY_MEDIA_DIR (their payload says ``media:<path>``)."""

from __future__ import annotations

import os
from pathlib import Path

from gateway.config import Settings

MEDIA_PREFIX = "media:"


def inside_folder(folder: Path, relative: str) -> Path | None:
    """The file, only if it lies inside ``folder`` (no ``..`` escapes; links the operator placed
    inside the folder are followed)."""
    root = Path(os.path.normpath(folder.absolute()))
    path = Path(os.path.normpath(root / relative))
    if not path.is_relative_to(root) or not path.is_file():
        return None
    return path


def image_path(settings: Settings, image: str) -> Path | None:
    """The file a payload's ``image`` names, or None when it is not there (or not allowed)."""
    if image.startswith(MEDIA_PREFIX):
        return inside_folder(settings.media_dir, image.removeprefix(MEDIA_PREFIX))
    if settings.catalog_dir is None:
        return None
    return inside_folder(settings.catalog_dir, image)
