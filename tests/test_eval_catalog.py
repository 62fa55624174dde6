"""The evaluation's in-memory search applies the gateway's filters and colour reranking."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gateway.catalog import CatalogRow
from gateway.config import Settings
from gateway.items import ResolvedItem
from shared.calibration import card_threshold
from shared.contracts import Category, VectorSpace
from tools import eval_retrieval
from tools.eval_retrieval import Catalog, confusion_table, photos_learnt, unseen_products


def catalog() -> Catalog:
    rows = [
        CatalogRow(str(i), f"{i}.jpg", g, Category.topwear, "Tshirts", c, None, None)
        for i, (g, c) in enumerate(
            [("Men", "Blue"), ("Men", "Red"), ("Women", "Red"), ("Unisex", "Navy Blue")]
        )
    ]
    vectors = np.array([[1.0, 0.0], [0.99, 0.14], [0.98, 0.2], [0.9, 0.43]], np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return Catalog(
        rows=rows,
        vectors=vectors,
        genders=np.array([r.gender for r in rows]),
        categories=np.array([Category.topwear.value] * 4),
        families=["tees and tops"] * 4,
        colour_families=["blue", "red", "red", "blue"],
    )


def test_gender_filter_and_plain_order() -> None:
    assert catalog().search([1.0, 0.0], Category.topwear, "Men", k=3) == [0, 1, 3]


def test_views_score_by_the_best_match_and_a_query_can_leave_itself_out() -> None:
    assert catalog().search([1.0, 0.0], Category.topwear, "Men", k=3, excluded=0) == [1, 3]
    found = catalog().search([0.0, 1.0], Category.topwear, "Men", k=3, views=[[1.0, 0.0]])
    assert found == [0, 1, 3], "the view on product 0 outranks the vector's own nearest (3)"


def test_an_instance_search_compares_the_instance_vectors() -> None:
    searched = catalog()
    searched.instances = np.array([[0.0, 1.0], [1.0, 0.0], [0.6, 0.8], [0.8, 0.6]], np.float32)
    look = searched.search([1.0, 0.0], Category.topwear, "Men", k=3)
    instance = searched.search([1.0, 0.0], Category.topwear, "Men", k=3, space=VectorSpace.instance)
    assert look == [0, 1, 3] and instance == [1, 3, 0]
    assert searched.search_mode(
        "plain", [1.0, 0.0], Category.topwear, "Men", "Red", space=VectorSpace.instance
    ) == [
        1,
        3,
        0,
    ]


def test_colour_rerank_lifts_the_items_colour_family() -> None:
    found = catalog().search([1.0, 0.0], Category.topwear, "Men", rerank_colour=0.2, colour="Red", k=3)
    assert found[0] == 1
    assert catalog().search([1.0, 0.0], Category.topwear, "Men", rerank_colour=0.2, colour="Blue", k=3) == [
        0,
        3,
        1,
    ]


def test_colour_match_keeps_only_its_family() -> None:
    assert catalog().search([1.0, 0.0], Category.topwear, "unknown", match_colour="Red", k=3) == [1, 2]


def test_a_mode_with_nothing_of_the_colour_searches_plain() -> None:
    plain = catalog().search([1.0, 0.0], Category.topwear, "Men", k=3)
    assert catalog().search_mode("colour=match", [1.0, 0.0], Category.topwear, "Men", "Green") == plain
    assert catalog().search_mode("colour=match", [1.0, 0.0], Category.topwear, "Men", "Red") == [1]


def test_neighbour_categories_ignore_the_category_and_keep_the_gender() -> None:
    found = catalog().neighbour_categories([1.0, 0.0], ["Women", "Unisex"], k=3)
    assert found == [Category.topwear, Category.topwear]  # rows 2 and 3: the men's are left out
    assert len(catalog().neighbour_categories([1.0, 0.0], None, k=3)) == 3


def test_the_confusion_table_shows_the_served_variant_labels_against_named_categories() -> None:
    confusion = {"dress": {"dress": 3, "topwear": 5}, "topwear": {"topwear": 9, "no item": 1}}
    report = {
        "variants": {
            "raw": {"product_photos": {"category_confusion": {"dress": {"dress": 1}}}},
            "served": {"product_photos": {"category_confusion": confusion}},
        }
    }
    table = confusion_table(report)
    assert "| label | dress | no item | topwear |" in table
    assert "| dress | 3 | 0 | 5 |" in table and "| topwear | 0 | 1 | 9 |" in table
    assert confusion_table({"variants": {"raw": {"person_photos": {}}}}) == []


def test_unseen_products_are_queries_that_leave_themselves_out() -> None:
    # ids 9 and 10 are in the tenth of the catalog no training sees (shared.splits), 1 and 2 are not
    ids = ["9", "1", "10", "2"]
    families = ["shirts", "shirts", "trousers", "trousers"]
    rows = [
        CatalogRow(pid, f"{pid}.jpg", "Men", Category.topwear, "Shirts", "Blue", None, None) for pid in ids
    ]
    vectors = np.array([[1.0, 0.0], [0.99, 0.1], [0.98, 0.2], [0.0, 1.0]], np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    found = unseen_products(
        Catalog(
            rows=rows,
            vectors=vectors,
            genders=np.array(["Men"] * 4),
            categories=np.array([Category.topwear.value] * 4),
            families=list(families),
            colour_families=["blue"] * 4,
        )
    )
    # "9" finds 1 (shirts), 10 (trousers), 2 (trousers): 1/3; "10" finds 1, 9 (shirts), 2: 1/3
    assert found == {"products": 2, "family_p@10": round(1 / 3, 4)}


def test_photos_the_head_or_tail_learnt_from_are_left_out_of_its_folder_only(tmp_path: Path) -> None:
    consumer, other = tmp_path / "consumer", tmp_path / "other"
    card, tail_card = tmp_path / "classifier.json", tmp_path / "category-tail.json"
    card.write_text(json.dumps({"photos": {"folder": "consumer", "images": ["images/a.jpg"]}}))
    tail_card.write_text(json.dumps({"photos": {"folder": "consumer", "images": ["images/b.jpg"]}}))
    assert photos_learnt(consumer, (card,)) == {"images/a.jpg"}
    assert photos_learnt(consumer, (card, tail_card)) == {"images/a.jpg", "images/b.jpg"}
    assert photos_learnt(other, (card, tail_card)) == set()
    card.write_text(json.dumps({"photos": None}))
    assert photos_learnt(consumer, (card,)) == set()
    assert photos_learnt(consumer, (tmp_path / "missing.json",)) == set()


def test_the_instance_projection_is_the_one_that_wins_the_product_photo_measures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trained = {}
    for name in ("candidate", "whitened"):
        trained[name] = tmp_path / f"{name}.npz"
        trained[name].write_text(name)
        trained[name].with_suffix(".json").write_text("{}")
    monkeypatch.setattr(eval_retrieval, "TRAINED", trained)

    def variant(recall10: float, recall1: float, family: float) -> dict[str, object]:
        calibration = {"threshold": round(recall1, 2), "photos": 500}  # told apart by variant
        return {
            "distorted": {"recall@10": recall10, "recall@1": recall1},
            "product_photos": {"family_p@10": family, "exact_match_calibrated": calibration},
        }

    report: dict[str, Any] = {
        "product_photos": "consumer",
        "variants": {
            "raw": variant(0.72, 0.52, 0.61),
            "candidate": variant(0.80, 0.58, 0.56),  # wins 2 of 3
            "whitened": variant(0.86, 0.67, 0.60),  # wins 2 of 3, more distorted products found
        },
    }
    target = tmp_path / "instance.npz"
    decision = eval_retrieval.adopt(report, eval_retrieval.INSTANCE_DECIDING, target, calibrate=True)
    assert target.read_text() == "whitened" and target.with_suffix(".json").exists()
    assert decision.startswith("adopted whitened")
    card = json.loads(target.with_suffix(".json").read_text())
    assert card["exact_match"] == {"threshold": 0.67, "photos": 500, "photos_folder": "consumer"}, (
        "the adopted projection's own calibration, where the embedding service reads it"
    )
    assert card_threshold(target) == 0.67
    del report["variants"]["whitened"]["product_photos"]["exact_match_calibrated"]
    eval_retrieval.adopt(report, eval_retrieval.INSTANCE_DECIDING, target, calibrate=True)
    assert card_threshold(target) is None, "none measured: no threshold of other cosines kept"
    report["variants"]["whitened"] = variant(0.70, 0.67, 0.60)
    report["variants"]["candidate"] = variant(0.70, 0.50, 0.62)
    assert eval_retrieval.adopt(report, eval_retrieval.INSTANCE_DECIDING, target).startswith("none adopted")
    assert not target.exists() and not target.with_suffix(".json").exists()


def test_a_worn_items_very_product_goes_first_when_close_enough() -> None:
    searched = catalog()
    searched.instances = np.array([[0.0, 1.0], [1.0, 0.0], [0.6, 0.8], [0.8, 0.6]], np.float32)
    worn = ResolvedItem(
        person=0,
        category=Category.topwear,
        article_type="Tshirts",
        colour="Blue",
        box=[0.0, 0.0, 1.0, 1.0],
        score=1.0,
        vector=[1.0, 0.0],
        instance=[0.0, 1.0],
        exact_match=0.9,  # as the pipeline gives it: the service's calibration or GATEWAY_EXACT_MATCH
    )
    settings = Settings()
    look = searched.search(worn.vector, Category.topwear, "Men", k=3)
    assert look == [0, 1, 3]
    # instance [0, 1] is nearest to product 0 (cosine 1.0, men's): already first
    assert eval_retrieval.with_exact_match(searched, settings, worn, "Men", look) == [0, 1, 3]
    moved = ResolvedItem(**{**worn.__dict__, "instance": [0.8, 0.6]})  # product 3, cosine 1.0
    assert eval_retrieval.with_exact_match(searched, settings, moved, "Men", look) == [3, 0, 1]
    far = ResolvedItem(**{**worn.__dict__, "instance": [0.7, 0.7], "exact_match": 1.0})  # cosine 0.99
    assert eval_retrieval.with_exact_match(searched, settings, far, "Men", look) == look
    uncalibrated = ResolvedItem(**{**moved.__dict__, "exact_match": None})
    assert eval_retrieval.with_exact_match(searched, settings, uncalibrated, "Men", look) == look
    loose = ResolvedItem(**{**moved.__dict__, "person": None})
    assert eval_retrieval.with_exact_match(searched, settings, loose, "Men", look) == look, (
        "a product photo's item is searched by its instance vector already"
    )


def test_a_new_report_keeps_what_was_adopted_and_with_keep_the_other_variants() -> None:
    data = {"catalog": "c", "products": 3, "queries": "q", "product_photos": "p"}
    earlier = {**data, "variants": {"raw": {}}, "decision": "instance vector: adopted whitened"}
    fresh: dict[str, Any] = {**data, "variants": {}}
    eval_retrieval.carry_over(fresh, earlier, keep=False)
    assert fresh["decision"] == earlier["decision"] and fresh["variants"] == {}
    eval_retrieval.carry_over(fresh, earlier, keep=True)
    assert fresh["variants"] == {"raw": {}}
    other: dict[str, Any] = {**data, "catalog": "another", "variants": {}}
    eval_retrieval.carry_over(other, earlier, keep=True)
    assert "decision" not in other and other["variants"] == {}
