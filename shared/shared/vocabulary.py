"""Families of article types and of colours: what counts as "the same kind" when matching.

An article type matches another of its family (Jeans, Trousers and Track Pants are all trousers);
a colour matches another of its family (Navy Blue and Blue). Names are the catalog's articleType and
baseColour values, plus the labels of consumer photos (T-Shirt, Pants, Outwear...). A name not
listed is its own family.
"""

from __future__ import annotations

ARTICLE_FAMILIES: dict[str, tuple[str, ...]] = {
    "tees and tops": (
        "Tshirts",
        "Tops",
        "Top",
        "T-Shirt",
        "Polo",
        "Undershirt",
        "Innerwear Vests",
        "Blouse",
        "Longsleeve",
        "Camisoles",
        "Tank Tops",
    ),
    "shirts": ("Shirts", "Shirt"),
    "knitwear": ("Sweaters", "Sweatshirts", "Hoodie"),
    "ethnic tops": ("Kurtas", "Kurtis", "Tunics", "Kurta Sets"),
    "outerwear": (
        "Jackets",
        "Blazers",
        "Blazer",
        "Coats",
        "Outwear",
        "Shrug",
        "Waistcoat",
        "Rain Jacket",
        "Nehru Jackets",
    ),
    "trousers": (
        "Jeans",
        "Trousers",
        "Track Pants",
        "Leggings",
        "Jeggings",
        "Tights",
        "Capris",
        "Churidar",
        "Lounge Pants",
        "Pants",
        "Salwar",
        "Tracksuits",
        "Stockings",
    ),
    "shorts": ("Shorts", "Lounge Shorts", "Boxers"),
    "skirts": ("Skirts", "Skirt"),
    "dresses": ("Dresses", "Dress", "Jumpsuit"),
    "shoes": ("Casual Shoes", "Sports Shoes", "Formal Shoes", "Shoes", "Sneakers"),
    "open shoes": ("Heels", "Flats", "Sandals", "Sports Sandals", "Flip Flops"),
    "bags": (
        "Handbags",
        "Backpacks",
        "Clutches",
        "Laptop Bag",
        "Messenger Bag",
        "Duffel Bag",
        "Rucksacks",
        "Mobile Pouch",
        "Waist Pouch",
    ),
    "headwear": ("Caps", "Hat", "Headband"),
}

COLOUR_FAMILIES: dict[str, tuple[str, ...]] = {
    "black": ("Black", "Charcoal"),
    "white": ("White", "Off White", "Cream"),
    "grey": ("Grey", "Grey Melange", "Silver", "Steel", "Metallic"),
    "blue": ("Blue", "Navy Blue", "Turquoise Blue", "Teal"),
    "brown": ("Brown", "Coffee Brown", "Tan", "Khaki", "Taupe", "Bronze", "Copper", "Beige", "Nude", "Skin"),
    "red": ("Red", "Maroon", "Burgundy", "Rust"),
    "pink": ("Pink", "Magenta", "Peach", "Mauve"),
    "purple": ("Purple", "Lavender"),
    "green": ("Green", "Olive", "Sea Green", "Fluorescent Green"),
    "yellow": ("Yellow", "Mustard", "Gold"),
    "orange": ("Orange",),
    "multi": ("Multi",),
}

_ARTICLE_FAMILY = {name.lower(): family for family, names in ARTICLE_FAMILIES.items() for name in names}
_COLOUR_FAMILY = {name.lower(): family for family, names in COLOUR_FAMILIES.items() for name in names}


def article_family(article: str | None) -> str | None:
    if not article:
        return None
    return _ARTICLE_FAMILY.get(article.strip().lower(), article.strip().lower())


def colour_family(colour: str | None) -> str | None:
    if not colour:
        return None
    return _COLOUR_FAMILY.get(colour.strip().lower(), colour.strip().lower())


def colours_of_family(colour: str) -> list[str]:
    """Every colour name of this colour's family (itself when it has none)."""
    family = colour_family(colour)
    return list(COLOUR_FAMILIES.get(family or "", (colour,)))
