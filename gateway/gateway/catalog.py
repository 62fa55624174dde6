"""Reading a catalog folder: ``catalog.csv`` (only ``id`` and ``image`` required) and its images.

The columns follow the Myntra product table: gender, category, masterCategory, subCategory,
articleType, baseColour, usage, productDisplayName. Missing columns are simply unknown.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from shared.contracts import Category, ProductPayload

REQUIRED_COLUMNS = ("id", "image")

# Article types sold as outer layers; the Myntra table files them under Topwear.
OUTERWEAR_TYPES = frozenset(
    {"Jackets", "Blazers", "Coats", "Rain Jacket", "Shrug", "Waistcoat", "Nehru Jackets", "Overcoats"}
)
SUBCATEGORY_CATEGORY = {
    "topwear": Category.topwear,
    "bottomwear": Category.bottomwear,
    "dress": Category.dress,
    "shoes": Category.footwear,
    "sandal": Category.footwear,
    "flip flops": Category.footwear,
}
ACCESSORY_MASTER = "accessories"


class CatalogError(ValueError):
    """The catalog folder cannot be read."""


@dataclass(frozen=True)
class CatalogRow:
    product_id: str
    image: str
    gender: str | None
    category: Category | None
    article_type: str | None
    colour: str | None
    name: str | None
    usage: str | None

    def payload(self) -> ProductPayload:
        return ProductPayload(
            product_id=self.product_id,
            gender=self.gender,
            category=self.category,
            article_type=self.article_type,
            colour=self.colour,
            name=self.name,
            usage=self.usage,
            image=self.image,
        )


def category_of(row: dict[str, str]) -> Category | None:
    """The product's category from whatever columns the catalog has; None when it has none of ours."""
    article = _clean(row.get("articleType"))
    if article in OUTERWEAR_TYPES:
        return Category.outerwear
    given = (_clean(row.get("category")) or "").lower()
    if given in Category.__members__:
        return Category(given)
    sub = (_clean(row.get("subCategory")) or "").lower()
    if sub in SUBCATEGORY_CATEGORY:
        return SUBCATEGORY_CATEGORY[sub]
    master = (_clean(row.get("masterCategory")) or "").lower()
    if master == ACCESSORY_MASTER:
        return Category.accessories
    if master == "footwear":
        return Category.footwear
    return None


def _clean(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value if value and value.upper() != "NA" else None


def read_catalog(folder: Path) -> list[CatalogRow]:
    """All products of ``folder/catalog.csv``; raises CatalogError naming what is wrong.

    A repeated id is the same product listed again: its last row wins, as an upsert would.
    """
    table = folder / "catalog.csv"
    if not table.is_file():
        raise CatalogError(f"{table} does not exist")
    with table.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise CatalogError(f"{table} lacks the required column(s) {', '.join(missing)}")
        rows: dict[str, CatalogRow] = {}
        for line, row in enumerate(reader, start=2):
            product_id, image = _clean(row.get("id")), _clean(row.get("image"))
            if not product_id or not image:
                raise CatalogError(f"{table} line {line}: id and image must not be empty")
            rows[product_id] = CatalogRow(
                product_id=product_id,
                image=image,
                gender=_clean(row.get("gender")),
                category=category_of(row),
                article_type=_clean(row.get("articleType")),
                colour=_clean(row.get("baseColour")),
                name=_clean(row.get("productDisplayName")),
                usage=_clean(row.get("usage")),
            )
    return list(rows.values())
