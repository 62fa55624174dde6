"""Choosing a crop's category: the classifier, and for a product photo the catalog's nearest
products voting with it; the items of a person's regions."""

from __future__ import annotations

import pytest

from gateway.items import Candidate, choose, resolve
from shared.contracts import REGION_CATEGORIES, Category, CropEmbedding, Region, VectorSpace

PRODUCT = REGION_CATEGORIES[Region.product]


def product(scores: dict[Category, float]) -> Candidate:
    return worn(None, Region.product, scores)


def worn(
    person: int | None, region: Region, scores: dict[Category, float], box: list[float] | None = None
) -> Candidate:
    embedding = CropEmbedding(
        vector=[1.0, 0.0], category_scores=scores, article_types=[], colour="Blue", colour_score=0.5
    )
    return Candidate(
        person=person, region=region, box=box or [0.0, 0.0, 1.0, 1.0], score=1.0, embedding=embedding
    )


def test_the_classifier_decides_alone_without_neighbours() -> None:
    shirt = product({Category.outerwear: 0.6, Category.topwear: 0.4})
    assert choose(shirt, PRODUCT) == (Category.outerwear, 0.6)


def test_nearest_products_outvote_an_unsure_classifier() -> None:
    shirt = product({Category.outerwear: 0.6, Category.topwear: 0.4})
    neighbours = [Category.topwear] * 8 + [Category.outerwear, None]
    category, probability = choose(shirt, PRODUCT, neighbours)
    assert category == Category.topwear and probability == (0.4 + 0.8) / 2


def test_a_sure_classifier_outweighs_a_split_neighbourhood() -> None:
    dress = product({Category.dress: 0.95, Category.topwear: 0.05})
    neighbours = [Category.topwear] * 5 + [Category.dress] * 3 + [None] * 2
    assert choose(dress, PRODUCT, neighbours)[0] == Category.dress


def test_the_vote_weight_sets_how_much_the_neighbours_count() -> None:
    jacket = product({Category.outerwear: 0.75, Category.topwear: 0.25})
    neighbours = [Category.topwear] * 9 + [Category.outerwear]
    assert choose(jacket, PRODUCT, neighbours, vote_weight=1.0)[0] == Category.topwear
    category, probability = choose(jacket, PRODUCT, neighbours, vote_weight=0.5)
    assert category == Category.outerwear and probability == pytest.approx((0.75 + 0.5 * 0.1) / 1.5)
    assert choose(jacket, PRODUCT, neighbours, vote_weight=0.0) == (Category.outerwear, 0.75)


def test_neighbours_decide_alone_whatever_their_weight_when_the_classifier_says_nothing() -> None:
    votes = [Category.footwear] * 6 + [Category.bottomwear] * 4
    assert choose(product({}), PRODUCT, votes, vote_weight=0.0) == (Category.footwear, 0.6)


def test_neighbours_decide_when_the_classifier_says_nothing() -> None:
    assert choose(product({}), PRODUCT, [Category.footwear] * 6 + [Category.bottomwear] * 4) == (
        Category.footwear,
        0.6,
    )


def test_resolve_hands_each_product_region_its_own_neighbours() -> None:
    first = product({Category.outerwear: 0.55, Category.topwear: 0.45})
    second = product({Category.outerwear: 0.55, Category.topwear: 0.45})
    items = resolve([first, second], [], {1: [Category.topwear] * 10})
    assert [item.category for item in items] == [Category.outerwear, Category.topwear]
    heeded_less = resolve([first, second], [], {1: [Category.topwear] * 10}, vote_weight=0.05)
    assert [item.category for item in heeded_less] == [Category.outerwear, Category.outerwear]


def _layered(upper: Category) -> list[Candidate]:
    jacket_or_top = worn(0, Region.upper_body, {upper: 0.9, Category.dress: 0.1}, [0.2, 0.2, 0.8, 0.6])
    # the strip's crop holds the lapels too: it may well read as a jacket itself
    strip = worn(0, Region.inner, {Category.outerwear: 0.8, Category.topwear: 0.2}, [0.45, 0.2, 0.55, 0.5])
    return [jacket_or_top, strip]


def test_the_middle_of_the_chest_under_outerwear_is_a_top_of_its_own() -> None:
    items = resolve(_layered(Category.outerwear), ["Men"])
    assert [(i.category, i.box) for i in items] == [
        (Category.outerwear, [0.2, 0.2, 0.8, 0.6]),
        (Category.topwear, [0.45, 0.2, 0.55, 0.5]),
    ]


def test_the_middle_of_the_chest_of_a_top_is_part_of_that_top() -> None:
    items = resolve(_layered(Category.topwear), ["Men"])
    assert [i.category for i in items] == [Category.topwear]


def test_only_items_worn_by_no_one_are_searched_by_their_instance_vectors() -> None:
    with_instance = CropEmbedding(
        vector=[1.0, 0.0],
        instance=[0.0, 0.0, 1.0],
        category_scores={Category.topwear: 1.0},
        article_types=[],
        colour="Blue",
        colour_score=0.5,
    )
    box = [0.0, 0.0, 1.0, 1.0]
    loose = Candidate(
        None, Region.product, box, 1.0, with_instance, views=[[0.0, 1.0]], instance_views=[[1.0, 0, 0]]
    )
    worn_top = Candidate(0, Region.upper_body, box, 1.0, with_instance)
    product_item, worn_item = resolve([loose, worn_top], ["Women"])[::-1]
    assert product_item.person is None and worn_item.person == 0
    assert product_item.query_vectors() == (VectorSpace.instance, [0.0, 0.0, 1.0], [[1.0, 0, 0]])
    assert product_item.query_vectors(by_instance=False) == (VectorSpace.look, [1.0, 0.0], [[0.0, 1.0]])
    assert worn_item.query_vectors() == (VectorSpace.look, [1.0, 0.0], [])
    assert resolve([product({Category.topwear: 1.0})], [])[0].query_vectors()[0] == VectorSpace.look, (
        "without an instance vector, by its look"
    )
