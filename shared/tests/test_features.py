from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from shared.features import network_of


def test_a_features_file_names_its_network_or_is_refused(tmp_path: Path) -> None:
    named, unnamed = tmp_path / "named.npz", tmp_path / "unnamed.npz"
    np.savez(named, vectors=np.zeros((2, 4)), backbone=np.array("efficientnet-lite0-imagenet"))
    np.savez(unnamed, vectors=np.zeros((2, 4)))
    assert network_of(np.load(named), named) == "efficientnet-lite0-imagenet"
    with pytest.raises(SystemExit, match="make features"):
        network_of(np.load(unnamed), unnamed)
