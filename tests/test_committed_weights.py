"""What the repository commits of trained models stays small: weights over 5 MB are made by the
project's own commands or fetched from the registries, never committed."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WEIGHT_SUFFIXES = (".npz", ".onnx", ".pt", ".pth", ".tflite", ".bin", ".h5", ".keras", ".safetensors")
MOST_BYTES = 5_000_000


def test_no_committed_weights_file_is_over_5_mb() -> None:
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, text=True
    ).stdout.split("\0")
    weights = [ROOT / name for name in tracked if name.endswith(WEIGHT_SUFFIXES)]
    assert weights, "the packaged heads and tails are committed weights"
    sizes = {str(path.relative_to(ROOT)): path.stat().st_size for path in weights if path.exists()}
    assert {name: size for name, size in sizes.items() if size > MOST_BYTES} == {}
