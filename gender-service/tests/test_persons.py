from __future__ import annotations

import httpx
import numpy as np
import pytest

from gender_service.appearance import Fusion, decide, fitted_backbone, with_prior
from gender_service.config import Settings


def _face(p_men: float | None, label: str = "unknown") -> dict[str, object]:
    return {"box": [0.4, 0.1, 0.6, 0.3], "detection_score": 0.9, "label": label, "score": 0.0, "p_men": p_men}


def test_fusion_uses_what_there_is_and_abstains_when_unsure() -> None:
    fusion = Fusion(face=(1.0, 0.0), appearance=(1.0, 0.0), prior=0.5)
    assert fusion.p_men(None, None) is None
    p, source = fusion.p_men(0.9, None) or (0.0, "")
    assert source == "face" and abs(p - 0.9) < 1e-9
    p, source = fusion.p_men(0.8, 0.8) or (0.0, "")
    assert source == "face+appearance" and p > 0.9  # two agreeing answers are surer than one
    assert decide(fusion.p_men(0.6, None), 0.75).label == "unknown"
    assert decide(fusion.p_men(0.1, None), 0.75).label == "Women"
    assert decide(None, 0.75).source == "none"


async def test_persons_are_judged_by_face_and_appearance(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    if not settings.appearance_model.exists():
        pytest.skip("no appearance model (make train-gender)")
    vector = np.random.default_rng(0).normal(size=1280)
    vector = (vector / np.linalg.norm(vector)).tolist()
    body = {
        "persons": [
            {"face": _face(0.98, "Men"), "vector": vector},
            {"face": _face(0.02, "Women"), "vector": None},
            {"face": None, "vector": vector},
            {"face": None, "vector": None},
            {"face": _face(None), "vector": None},
        ]
    }
    response = await client.post("/persons", json=body)
    assert response.status_code == 200, response.text
    persons = response.json()["persons"]
    assert persons[0]["source"] in ("face+appearance", "none")
    assert persons[1] == {"label": "Women", "score": persons[1]["score"], "source": "face"}
    assert persons[2]["source"] in ("appearance", "none")
    assert persons[3] == {"label": "unknown", "score": 0.0, "source": "none"}
    assert persons[4]["label"] == "unknown"


async def test_a_vector_of_the_wrong_size_is_422(client: httpx.AsyncClient, settings: Settings) -> None:
    if not settings.appearance_model.exists():
        pytest.skip("no appearance model (make train-gender)")
    response = await client.post("/persons", json={"persons": [{"face": None, "vector": [0.1, 0.2]}]})
    assert response.status_code == 422 and "1280" in response.json()["detail"]


async def test_vectors_of_another_network_are_422(client: httpx.AsyncClient, settings: Settings) -> None:
    """Lite0 and Lite2 features have the same size: the network's name is what tells them apart."""
    if not settings.appearance_model.exists():
        pytest.skip("no appearance model (make train-gender)")
    fitted = fitted_backbone(settings.fusion)
    assert fitted, "the appearance model names the network it was fitted on"
    vector = (np.ones(1280) / np.sqrt(1280)).tolist()
    persons = [{"face": None, "vector": vector}]
    refused = await client.post("/persons", json={"persons": persons, "backbone": "some-other-network"})
    assert refused.status_code == 422
    assert fitted in refused.json()["detail"] and "make train-gender" in refused.json()["detail"]
    for backbone in (fitted, ""):  # "": a client that does not say (older gateways) is trusted
        answered = await client.post("/persons", json={"persons": persons, "backbone": backbone})
        assert answered.status_code == 200, answered.text


def test_answers_are_moved_from_the_catalogs_share_of_men_to_the_expected_one() -> None:
    """Calibrated on a catalog of 71% men, an answer that says no more than that prior is an even
    chance among persons half of whom are men, and a Woman seen at 0.2 is surer than the catalog said."""
    p, source = with_prior((0.71, "appearance"), fitted=0.71, wanted=0.5) or (0.0, "")
    assert abs(p - 0.5) < 1e-9 and source == "appearance"
    assert (with_prior((0.2, "face"), fitted=0.71, wanted=0.5) or (1.0, ""))[0] < 0.2
    assert with_prior((0.8, "face"), fitted=0.5, wanted=0.5) == (0.8, "face")
    assert with_prior(None, fitted=0.71, wanted=0.5) is None
