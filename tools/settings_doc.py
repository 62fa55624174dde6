"""Every environment variable the services read, from their Settings classes: writes deploy/settings.md
(`make settings-doc`); tests/test_deploy.py checks that none is missing there.

    python -m tools.settings_doc > deploy/settings.md
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from pydantic import AliasChoices
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from shared.settings import ServiceSettings

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Variable:
    names: tuple[str, ...]  # the first is the canonical one; others are accepted too
    default: str
    description: str


DEPLOYMENT_ONLY = [
    "",
    "## Read by the deployment only",
    "",
    "| variable | where | what |",
    "|---|---|---|",
    "| `CATALOG_DIR` | compose | Catalog folder mounted at `/catalog` (default `../shared/catalog/myntra`) |",
    "| `PUBLISHED_PORT` | compose | Host port the gateway is published on (default 8000) |",
    "| `TAG` | compose | Tag of the images built and run (default `latest`) |",
    "| `QDRANT_URL`, `QDRANT_COLLECTION` | Kubernetes, compose | Where `ensure_collection.py` creates the product collection |",
    "| `QDRANT_SHARDS`, `QDRANT_REPLICATION_FACTOR` | Kubernetes, compose | Shards of the collection, and copies of each |",
    "| `QDRANT_PEERS`, `QDRANT_WAIT_S` | Kubernetes, compose | Peers to wait for before creating it, and how long |",
]


def service_folders() -> list[str]:
    """Folders holding a service: a Dockerfile and a package with a config.py."""
    return sorted(
        p.name
        for p in ROOT.iterdir()
        if (p / "Dockerfile").is_file() and (p / p.name.replace("-", "_") / "config.py").is_file()
    )


def load_config(service: str) -> ModuleType:
    """The service's config module, loaded from its file (the other services' packages are not
    installed in the environment that runs the checks; config modules import only shared)."""
    path = ROOT / service / service.replace("-", "_") / "config.py"
    name = f"_settings_of_{service.replace('-', '_')}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def variables(service: str) -> list[Variable]:
    settings = load_config(service).Settings
    prefix = str(settings.model_config.get("env_prefix", ""))
    return [_variable(prefix, name, field) for name, field in settings.model_fields.items()]


def _variable(prefix: str, name: str, field: FieldInfo) -> Variable:
    alias = field.validation_alias
    if isinstance(alias, AliasChoices):
        names = tuple(str(choice).upper() for choice in alias.choices)
    elif isinstance(alias, str):
        names = (alias.upper(),)
    else:
        names = (f"{prefix}{name}".upper(),)
    inherited = ServiceSettings.model_fields.get(name)  # a service may redefine a field by its default only
    description = field.description or (inherited.description if inherited else None) or ""
    return Variable(names, _default(field.default), " ".join(description.split()))


def _default(value: Any) -> str:
    if value is PydanticUndefined:
        return "(required)"
    if value is None:
        return "(unset)"
    if isinstance(value, Path) and value.is_absolute():
        parts = value.parts
        package = next(
            (i for i, part in enumerate(parts) if part.endswith("_service") or part == "gateway"), None
        )
        return "/".join(parts[package:]) if package is not None else str(value)  # inside the package
    return str(value)


def all_names() -> dict[str, str]:
    """Every variable name any service reads, with the service that reads it."""
    return {name: service for service in service_folders() for v in variables(service) for name in v.names}


def markdown() -> str:
    lines = [
        "# Settings",
        "",
        "Every environment variable the services read (generated from their `config.py` by",
        "`make settings-doc`; `make deploy-check` fails when one is missing here). In Kubernetes they",
        "come from the `shopthelook-config` ConfigMap and the `shopthelook-secrets` Secret",
        "(`deploy/base/config.yaml`), in compose from `docker-compose.yml`.",
    ]
    for service in service_folders():
        lines += ["", f"## {service}", "", "| variable | default | what |", "|---|---|---|"]
        for v in variables(service):
            names = " or ".join(f"`{n}`" for n in v.names)
            lines.append(f"| {names} | `{v.default}` | {v.description.replace('|', '/')} |")
    return "\n".join(lines + DEPLOYMENT_ONLY) + "\n"


def main() -> int:
    sys.stdout.write(markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
