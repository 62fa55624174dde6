"""Writing a tool's report: ``reports/<name>.json`` with the figures, ``.md`` with the table."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def save_json(output: Path, report: Mapping[str, Any]) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")


def write_report(output: Path, report: Mapping[str, Any], table: str) -> None:
    """The figures as JSON at ``output``, the table beside it as markdown and on standard output."""
    save_json(output, report)
    output.with_suffix(".md").write_text(table)
    sys.stdout.write(table)
