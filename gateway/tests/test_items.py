"""Choosing a crop's category: the classifier, and for a product photo the catalog's nearest
products voting with it."""

from __future__ import annotations

from gateway.items import Candidate, choose, resolve
from shared.contracts import REGION_CATEGORIES, Category, CropEmbedding, Region

PRODUCT = REGION_CATEGORIES[Region.product]


def product(scores: dict[Category, float]) -> Candidate:
    embedding = CropEmbedding(
        vector=[1.0, 0.0], category_scores=scores, article_types=[], colour="Blue", colour_score=0.5
    )
    return Candidate(
        person=None, region=Region.product, box=[0.0, 0.0, 1.0, 1.0], score=1.0, embedding=embedding
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
