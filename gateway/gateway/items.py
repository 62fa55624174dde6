"""From detector regions and crop classifications to the items a person wears.

The detector says where (upper body, legs, feet, shoulders-to-hem, the middle of the chest); the
classifier says what. A region's category is the classifier's best among those the region can hold
(for a product photo, voted on together with the catalog's nearest products); a dress replaces the
top and bottom it was split into; the middle of the chest is a top of its own when the upper body
is outerwear.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, cast

from shared.contracts import (
    REGION_CATEGORIES,
    Category,
    CropEmbedding,
    GenderLabel,
    ProductPayload,
    Region,
    VectorSpace,
)

DEFAULT_CATEGORY = {
    Region.upper_body: Category.topwear,
    Region.lower_body: Category.bottomwear,
    Region.full: Category.dress,
    Region.inner: Category.topwear,
    Region.feet: Category.footwear,
    Region.product: Category.topwear,
}
UPPER_WITHOUT_DRESS = (Category.topwear, Category.outerwear)


@dataclass(frozen=True)
class Candidate:
    person: int | None
    region: Region
    box: list[float]
    score: float
    embedding: CropEmbedding
    category: Category | None = None  # known from the detector itself (a YOLO detection)
    colour: str | None = None  # from the garment's own pixels, when the detector had a person mask
    views: list[list[float]] = field(default_factory=list)  # vectors of a product photo's windows
    instance_views: list[list[float]] = field(default_factory=list)  # the windows' instance vectors


@dataclass(frozen=True)
class ResolvedItem:
    person: int | None
    category: Category
    article_type: str | None
    colour: str
    box: list[float]
    score: float
    vector: list[float]
    views: list[list[float]] = field(default_factory=list)
    instance: list[float] | None = None  # the crop's instance vector, when the service makes them
    instance_views: list[list[float]] = field(default_factory=list)
    # the instance cosine from which its nearest product is the very product (exact_first): the
    # calibration of what made the instance vector, or the gateway's setting; None: not looked for
    exact_match: float | None = None

    def query_vectors(self, by_instance: bool = True) -> tuple[VectorSpace, list[float], list[list[float]]]:
        """What the item is searched by. An item worn by no one (a product photo) is looked for as
        the very product, by its instance vector and windows, when it has them and ``by_instance``:
        a shopper posting a product mostly wants that product. A worn garment is searched by its
        look, which finds products of its kind and colour."""
        if by_instance and self.person is None and self.instance is not None:
            return VectorSpace.instance, self.instance, self.instance_views
        return VectorSpace.look, self.vector, self.views


def restricted(scores: dict[Category, float], allowed: tuple[Category, ...]) -> dict[Category, float]:
    """The classifier's distribution renormalised over the categories a region can hold."""
    kept = {c: scores.get(c, 0.0) for c in allowed}
    total = sum(kept.values())
    return {c: p / total for c, p in kept.items()} if total > 0 else {}


def choose(
    candidate: Candidate,
    allowed: tuple[Category, ...],
    neighbours: Sequence[Category | None] = (),
    vote_weight: float = 1.0,
) -> tuple[Category, float]:
    """The most likely allowed category, with its probability. ``neighbours``: the categories of
    the catalog's nearest products to the crop; their shares count ``vote_weight`` times the
    classifier's distribution (the catalog knows the store's own products, the classifier has also
    learnt from shoppers' photos)."""
    distribution = restricted(candidate.embedding.category_scores, allowed)
    votes = [c for c in neighbours if c in allowed]
    if votes:
        shares = {c: votes.count(c) / len(neighbours) for c in allowed}
        head, vote = (1.0, vote_weight) if distribution else (0.0, 1.0)
        distribution = {
            c: (head * distribution.get(c, 0.0) + vote * shares[c]) / (head + vote) for c in allowed
        }
    if not distribution:
        return DEFAULT_CATEGORY[candidate.region], 1.0
    category = max(distribution, key=lambda c: distribution[c])
    return category, distribution[category]


def _reads_as(candidate: Candidate, category: Category) -> bool:
    scores = candidate.embedding.category_scores
    return bool(scores) and max(scores, key=lambda c: scores[c]) == category


def is_dress(upper: Candidate | None, full: Candidate | None, gender: GenderLabel) -> bool:
    """A one-piece garment: the shoulders-to-hem crop reads as a dress to either head, or the upper
    body alone already does. Men's looks are never split into a dress."""
    if full is None or gender == "Men":
        return False
    if _reads_as(full, Category.dress):
        return True
    articles = full.embedding.article_types
    if articles and articles[0].category == Category.dress:
        return True
    return upper is not None and choose(upper, REGION_CATEGORIES[Region.upper_body])[0] == Category.dress


def resolve(
    candidates: list[Candidate],
    genders: list[GenderLabel],
    neighbours: Mapping[int, Sequence[Category | None]] | None = None,
    vote_weight: float = 1.0,
) -> list[ResolvedItem]:
    """Items in a stable order: persons in order, then product regions; top to toe within a person.
    ``neighbours``: for product regions (by their index in ``candidates``), the categories of the
    catalog's nearest products, which vote with the classifier on the category (``choose``)."""
    votes = neighbours or {}
    by_person: dict[int, dict[Region, Candidate]] = defaultdict(dict)
    known: dict[int | None, list[Candidate]] = defaultdict(list)
    products: list[tuple[int, Candidate]] = []
    for index, candidate in enumerate(candidates):
        if candidate.category is not None:
            known[candidate.person].append(candidate)
        elif candidate.person is None:
            products.append((index, candidate))
        else:
            by_person[candidate.person][candidate.region] = candidate
    items = []
    for person in sorted(set(by_person) | {p for p in known if p is not None}):
        gender = genders[person] if person < len(genders) else "unknown"
        items.extend(_person_items(by_person.get(person, {}), gender))
        items.extend(_item(c, c.category, 1.0) for c in known[person] if c.category is not None)
    for index, candidate in products:
        category, probability = choose(
            candidate, REGION_CATEGORIES[Region.product], votes.get(index, ()), vote_weight
        )
        items.append(_item(candidate, category, probability))
    items.extend(_item(c, c.category, 1.0) for c in known[None] if c.category is not None)
    return items


def _person_items(regions: dict[Region, Candidate], gender: GenderLabel) -> list[ResolvedItem]:
    upper, lower, full, feet, inner = (
        regions.get(r) for r in (Region.upper_body, Region.lower_body, Region.full, Region.feet, Region.inner)
    )
    items = []
    if full is not None and is_dress(upper, full, gender):
        items.append(_item(full, Category.dress, full.embedding.category_scores.get(Category.dress, 1.0)))
    else:
        if upper is not None:
            category, probability = choose(upper, UPPER_WITHOUT_DRESS)
            long_coat = (
                category == Category.outerwear and full is not None and _reads_as(full, Category.outerwear)
            )
            # a long coat is one garment from the shoulders past the hips: its box is the long one
            items.append(_item(full if long_coat and full else upper, category, probability))
            if category == Category.outerwear and inner is not None:
                # the detector saw another layer down the middle of the chest: the top under it (its
                # crop holds the lapels too, so the head's own reading of it is no guide)
                items.append(_item(inner, Category.topwear, 1.0))
        if lower is not None:
            items.append(_item(lower, Category.bottomwear, 1.0))
    if feet is not None:
        items.append(_item(feet, Category.footwear, 1.0))
    return items


def _item(candidate: Candidate, category: Category, probability: float) -> ResolvedItem:
    article = next((a.name for a in candidate.embedding.article_types if a.category == category), None)
    return ResolvedItem(
        person=candidate.person,
        category=category,
        article_type=article,
        colour=_colour(candidate),
        box=candidate.box,
        score=round(candidate.score * probability, 4),
        vector=candidate.embedding.vector,
        views=candidate.views,
        instance=candidate.embedding.instance,
        instance_views=candidate.instance_views,
    )


def _colour(candidate: Candidate) -> str:
    colour = candidate.colour or candidate.embedding.colour
    if colour is None:
        raise ValueError("the crop was embedded without its colour (colours=false)")
    return colour


def gender_filter(label: GenderLabel) -> list[str] | None:
    """Catalog genders a person of this label shops from; None (no filter) when unknown."""
    if label == "unknown":
        return None
    return [label, "Unisex"]


SHOPPER_GENDERS = ("Men", "Women")


def genders_like(product: ProductPayload, requested: Literal["auto", "Men", "Women"]) -> list[str] | None:
    """The catalog genders to look for products like this one among: the requested gender's, else
    (auto) its shopper's (with Unisex); None (every gender) for a Unisex, Boys' or Girls' product."""
    if requested != "auto":
        return gender_filter(requested)
    return gender_filter(cast(GenderLabel, product.gender)) if product.gender in SHOPPER_GENDERS else None
