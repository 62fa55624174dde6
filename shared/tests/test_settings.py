from __future__ import annotations

from pathlib import Path

from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class ThresholdSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="TEST_THRESHOLD_", extra="ignore")

    min_score: float = 0.5
    model_threads: int = 1
    weights: Path = Path("weights.bin")


def test_the_model_version_follows_the_model_files_bytes(tmp_path: Path) -> None:
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"one")
    before = ThresholdSettings().model_version([weights])
    assert ThresholdSettings().model_version([weights]) == before, "the same files, the same version"
    weights.write_bytes(b"two")  # retrained in place
    assert ThresholdSettings().model_version([weights]) != before


def test_the_model_version_follows_the_settings_that_shape_answers(tmp_path: Path) -> None:
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"one")
    before = ThresholdSettings().model_version([weights])
    assert ThresholdSettings(min_score=0.6).model_version([weights]) != before
    running_apart = ThresholdSettings(port=9001, log_level="DEBUG", inference_threads=8, model_threads=4)
    assert running_apart.model_version([weights]) == before, "replicas may run differently"


def test_the_model_version_follows_what_a_file_holds_not_where_it_lies(tmp_path: Path) -> None:
    here, there = tmp_path / "a" / "weights.bin", tmp_path / "b" / "weights.bin"
    for path in (here, there):
        path.parent.mkdir()
        path.write_bytes(b"one")
    assert ThresholdSettings(weights=here).model_version([here]) == ThresholdSettings(
        weights=there
    ).model_version([there])
