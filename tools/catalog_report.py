"""Catalog report: what a catalog folder holds and what the engine will make of it.

Counts the products by gender, by the engine's own category (``gateway.catalog.category_of``), by
the raw master and sub-category, article type, colour, usage, season and year; reads every image
the way ingestion does; finds repeated ids, rows the engine refuses, products it cannot index (image
missing or unreadable) and products with none of its categories (ingestion then indexes them under
the category its classifier head predicts: ``gateway.ingest.to_point``).
Writes OUTPUT/catalog.json (the counts), OUTPUT/catalog.md (the summary) and one bar chart per
column, OUTPUT/catalog-<name>.png. Any column but ``id`` and ``image`` may be absent or empty.

    .venv/gateway/bin/python -m tools.catalog_report --catalog ../shared/catalog/myntra --output reports
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from gateway.catalog import REQUIRED_COLUMNS, CatalogError, _clean, category_of, read_catalog
from shared.images import ImageError, decode_image

logger = logging.getLogger("catalog_report")

UNKNOWN = "unknown"
NO_CATEGORY = "none (predicted at ingest)"
SAMPLE = 10  # ids named for each problem
BAR_COLOUR = "#4c72b0"
REST_COLOUR = "#b0b0b0"  # unknown, other, no category


@dataclass(frozen=True)
class Chart:
    """One counted column: its key in catalog.json, its PNG (catalog-<key>.png) and its title."""

    key: str
    title: str
    column: str | None  # the catalog column counted; None: the engine's category
    top: int | None = None  # the most frequent values drawn, the rest summed as "other"
    by_label: bool = False  # bars in label order (years) rather than by count


CHARTS = (
    Chart("gender", "Products by gender", "gender"),
    Chart("category", "Products by engine category", None),
    Chart("master-category", "Products by catalog master category", "masterCategory"),
    Chart("sub-category", "Products by catalog sub-category", "subCategory", top=30),
    Chart("article-type", "Products by article type", "articleType", top=30),
    Chart("colour", "Products by base colour", "baseColour", top=30),
    Chart("usage", "Products by usage", "usage"),
    Chart("season", "Products by season", "season"),
    Chart("year", "Products by year", "year", by_label=True),
)


@dataclass
class Table:
    """catalog.csv as the engine keeps it: a repeated id is one product, its last row."""

    columns: list[str]
    rows: int = 0
    products: dict[str, dict[str, str | None]] = field(default_factory=dict)
    listings: Counter[str] = field(default_factory=Counter)
    invalid_lines: list[int] = field(default_factory=list)

    def add(self, line: int, row: dict[str, str | None]) -> None:
        self.rows += 1
        product_id, image = _clean(row.get("id")), _clean(row.get("image"))
        if not product_id or not image:
            self.invalid_lines.append(line)
            return
        self.listings[product_id] += 1
        self.products[product_id] = row

    def repeated_ids(self) -> list[str]:
        return [product_id for product_id, times in self.listings.items() if times > 1]


@dataclass
class Problem:
    """Products (or lines) with one kind of problem: how many, and the first few."""

    count: int
    first: list[str]

    @classmethod
    def of(cls, items: Iterable[str | int]) -> Problem:
        found = [str(item) for item in items]
        return cls(count=len(found), first=found[:SAMPLE])


@dataclass
class CatalogReport:
    catalog: str
    rows: int
    products: int
    indexable: int  # products with a readable image (all of them, if ingestion accepts the catalog)
    columns_absent: list[str]
    engine_error: str | None  # why ingestion refuses the whole catalog, if it does
    counts: dict[str, dict[str, int]]  # per chart key; none for an absent column
    category_by_gender: dict[str, dict[str, int]]
    category_mapping: list[dict[str, str | int]]  # masterCategory, subCategory -> engine category
    repeated_ids: Problem
    invalid_rows: Problem  # line numbers of rows without an id or an image
    missing_images: Problem
    unreadable_images: Problem
    no_category: Problem  # none of the engine's categories: the classifier head picks one at ingest

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def read_table(folder: Path) -> Table:
    """Every row of ``folder/catalog.csv``; CatalogError when it is absent or lacks id or image."""
    path = folder / "catalog.csv"
    if not path.is_file():
        raise CatalogError(f"{path} does not exist")
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        table = Table(columns=list(reader.fieldnames or []))
        missing = [column for column in REQUIRED_COLUMNS if column not in table.columns]
        if missing:
            raise CatalogError(f"{path} lacks the required column(s) {', '.join(missing)}")
        for line, row in enumerate(reader, start=2):
            table.add(line, row)
    return table


def engine_category(row: dict[str, str | None]) -> str:
    category = category_of(row)  # type: ignore[arg-type]  # it reads absent and None cells alike
    return category.value if category else NO_CATEGORY


def value_counts(table: Table, chart: Chart) -> dict[str, int] | None:
    """Products per value of the chart's column (empty: "unknown"); None when the column is absent."""
    if chart.column is None:
        counts = Counter(engine_category(row) for row in table.products.values())
    elif chart.column in table.columns:
        counts = Counter(_clean(row.get(chart.column)) or UNKNOWN for row in table.products.values())
    else:
        return None
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def category_by_gender(table: Table) -> dict[str, dict[str, int]]:
    pairs = Counter(
        (engine_category(row), _clean(row.get("gender")) or UNKNOWN) for row in table.products.values()
    )
    grid: dict[str, dict[str, int]] = {}
    for (category, gender), count in sorted(pairs.items()):
        grid.setdefault(category, {})[gender] = count
    return grid


def category_mapping(table: Table) -> list[dict[str, str | int]]:
    """How the raw masterCategory/subCategory pairs land in the engine's categories, largest first."""
    triples = Counter(
        (
            _clean(row.get("masterCategory")) or UNKNOWN,
            _clean(row.get("subCategory")) or UNKNOWN,
            engine_category(row),
        )
        for row in table.products.values()
    )
    ordered = sorted(triples.items(), key=lambda item: (-item[1], item[0]))
    return [
        {"masterCategory": master, "subCategory": sub, "category": category, "products": count}
        for (master, sub, category), count in ordered
    ]


def image_problem(path: Path) -> str | None:
    """Why ingestion would fail on this image ("missing", "unreadable"); None when it reads it."""
    if not path.is_file():
        return "missing"
    try:
        decode_image(path.read_bytes())
    except (ImageError, OSError):
        return "unreadable"
    return None


def check_images(folder: Path, table: Table) -> dict[str, list[str]]:
    problems: dict[str, list[str]] = {"missing": [], "unreadable": []}
    for product_id, row in table.products.items():
        problem = image_problem(folder / (_clean(row.get("image")) or ""))
        if problem:
            problems[problem].append(product_id)
    return problems


def engine_verdict(folder: Path) -> str | None:
    """What ingestion's own reader says of the catalog: None when it accepts it."""
    try:
        read_catalog(folder)
    except CatalogError as exc:
        return str(exc)
    return None


def build_report(folder: Path, *, label: str | None = None) -> CatalogReport:
    """The report of the catalog folder ``folder`` (named ``label`` in it, default its path)."""
    table = read_table(folder)
    images = check_images(folder, table)
    no_category = [pid for pid, row in table.products.items() if engine_category(row) == NO_CATEGORY]
    counts = {chart.key: value_counts(table, chart) for chart in CHARTS}
    return CatalogReport(
        catalog=label or str(folder),
        rows=table.rows,
        products=len(table.products),
        indexable=len(table.products) - len(images["missing"]) - len(images["unreadable"]),
        columns_absent=[c for c in dict.fromkeys(c.column for c in CHARTS) if c and c not in table.columns],
        engine_error=engine_verdict(folder),
        counts={key: value for key, value in counts.items() if value is not None},
        category_by_gender=category_by_gender(table),
        category_mapping=category_mapping(table),
        repeated_ids=Problem.of(table.repeated_ids()),
        invalid_rows=Problem.of(table.invalid_lines),
        missing_images=Problem.of(images["missing"]),
        unreadable_images=Problem.of(images["unreadable"]),
        no_category=Problem.of(no_category),
    )


# --- charts ------------------------------------------------------------------------------------
def bars_of(counts: dict[str, int], chart: Chart) -> list[tuple[str, int]]:
    """The bars to draw, top to bottom: known values (the ``top`` largest, then "other"), then unknown."""
    rest = {UNKNOWN, NO_CATEGORY}
    known = [(label, n) for label, n in counts.items() if label not in rest]
    known.sort(key=lambda item: item[0] if chart.by_label else (-item[1], item[0]))
    if chart.top is not None and len(known) > chart.top:
        others = known[chart.top :]
        known = [*known[: chart.top], (f"other ({len(others)} values)", sum(n for _, n in others))]
    return known + [(label, counts[label]) for label in sorted(rest) if counts.get(label)]


def chart_title(chart: Chart, counts: dict[str, int]) -> str:
    values = sum(1 for label in counts if label not in (UNKNOWN, NO_CATEGORY))
    shown = f"top {chart.top} of {values} values, " if chart.top is not None and values > chart.top else ""
    return f"{chart.title} ({shown}{sum(counts.values()):,} products)"


def plot_bars(bars: list[tuple[str, int]], title: str, path: Path) -> None:
    """A horizontal bar chart, largest at the top, each bar labelled with its count and share."""
    total = sum(n for _, n in bars) or 1
    figure = Figure(figsize=(9, 1.2 + 0.32 * len(bars)), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    positions = list(range(len(bars)))
    colours = [BAR_COLOUR if _is_value(label) else REST_COLOUR for label, _ in bars]
    drawn = axes.barh(positions, [n for _, n in bars], color=colours)
    axes.set_yticks(positions, [label for label, _ in bars])
    axes.invert_yaxis()
    axes.bar_label(drawn, labels=[f"{n:,} ({_share(n, total)})" for _, n in bars], padding=3, fontsize=8)
    axes.margins(x=0.18, y=0.01)
    axes.set_xlabel("products")
    axes.set_title(title, fontsize=11, loc="left")
    axes.spines[["top", "right"]].set_visible(False)
    figure.savefig(path, dpi=100, metadata={"Software": None})


def _share(count: int, total: int) -> str:
    share = count / total
    return "<0.1%" if 0 < share < 0.0005 else f"{share:.1%}"


def _is_value(label: str) -> bool:
    return label not in (UNKNOWN, NO_CATEGORY) and not label.startswith("other (")


def draw_charts(report: CatalogReport, output: Path) -> dict[str, str]:
    """Draws each chart with a known value to OUTPUT/catalog-<key>.png; returns why the others are not.

    A stale PNG of a chart not drawn (from an earlier catalog) is removed.
    """
    skipped: dict[str, str] = {}
    for chart in CHARTS:
        path = output / f"catalog-{chart.key}.png"
        counts = report.counts.get(chart.key)
        if counts is None:
            skipped[chart.key] = f"no `{chart.column}` column"
        elif not any(_is_value(label) for label in counts):
            skipped[chart.key] = "no product has a value"
        else:
            plot_bars(bars_of(counts, chart), chart_title(chart, counts), path)
            continue
        path.unlink(missing_ok=True)
    return skipped


# --- markdown ----------------------------------------------------------------------------------
def markdown(report: CatalogReport, skipped: dict[str, str]) -> str:
    return "\n".join(
        [
            "# Catalog report",
            "",
            *_overview(report),
            "",
            *_problems(report),
            "",
            *_grid(report),
            "",
            *_mapping(report),
            "",
            *_charts(report, skipped),
        ]
    )


def _overview(report: CatalogReport) -> list[str]:
    lines = [
        f"Catalog `{report.catalog}`: {report.rows:,} rows, {report.products:,} products "
        "(a repeated id is one product, its last row, as ingestion keeps it). "
        f"**{report.indexable:,} can be indexed**: those with a readable image. Counts are of products; "
        f"an empty cell is `{UNKNOWN}`; `{NO_CATEGORY}` is a product with none of the engine's six "
        "categories, which ingestion indexes under the category its classifier head predicts.",
    ]
    if report.columns_absent:
        lines += ["", f"Columns absent: {', '.join(f'`{c}`' for c in report.columns_absent)}."]
    if report.engine_error:
        lines += ["", f"**Ingestion refuses this catalog as it is**: {report.engine_error}."]
    return lines


def _problems(report: CatalogReport) -> list[str]:
    rows = [
        ("none of the engine's categories (the classifier head picks one)", report.no_category),
        ("image missing on disk (not indexed)", report.missing_images),
        ("image unreadable (not indexed)", report.unreadable_images),
        ("id listed more than once", report.repeated_ids),
        ("row without id or image (line numbers)", report.invalid_rows),
    ]
    lines = ["## Problems", "", "| problem | count | first |", "|---|---:|---|"]
    for name, problem in rows:
        first = ", ".join(problem.first) + (", …" if problem.count > len(problem.first) else "")
        lines.append(f"| {name} | {problem.count:,} | {first} |")
    return lines


def _grid(report: CatalogReport) -> list[str]:
    genders = sorted({g for row in report.category_by_gender.values() for g in row}, key=_unknown_last)
    lines = [
        "## Engine categories by gender",
        "",
        "A search is filtered by category and by the person's gender (Men or Women) plus Unisex "
        "(`gateway.items.gender_filter`); other genders come up only when the person's is unknown.",
        "",
        "| category | " + " | ".join(genders) + " | total |",
        "|---|" + "---:|" * (len(genders) + 1),
    ]
    for category in sorted(report.category_by_gender, key=_unknown_last):
        row = report.category_by_gender[category]
        cells = [f"{row.get(g, 0):,}" for g in genders]
        lines.append(f"| {category} | " + " | ".join(cells) + f" | {sum(row.values()):,} |")
    return lines


def _unknown_last(label: str) -> tuple[bool, str]:
    return (label in (UNKNOWN, NO_CATEGORY), label)


def _mapping(report: CatalogReport) -> list[str]:
    lines = [
        "## Catalog categories and the engine's",
        "",
        "How each `masterCategory` / `subCategory` pair lands in the engine's six categories "
        "(`gateway.catalog.category_of`; outer layers are told by their article type).",
        "",
        "| masterCategory | subCategory | engine category | products |",
        "|---|---|---|---:|",
    ]
    for entry in report.category_mapping:
        lines.append(
            f"| {entry['masterCategory']} | {entry['subCategory']} | {entry['category']} | "
            f"{entry['products']:,} |"
        )
    return lines


def _charts(report: CatalogReport, skipped: dict[str, str]) -> list[str]:
    lines = ["## Charts"]
    for chart in CHARTS:
        if chart.key in skipped:
            continue
        lines += ["", f"### {chart.title}", "", f"![{chart.title}](catalog-{chart.key}.png)"]
    if skipped:
        lines += ["", "Not drawn: " + "; ".join(f"{key} ({why})" for key, why in skipped.items()) + "."]
    return lines


def write_report(report: CatalogReport, output: Path) -> list[Path]:
    """catalog.json, catalog.md and the charts under ``output``; returns the files written."""
    output.mkdir(parents=True, exist_ok=True)
    skipped = draw_charts(report, output)
    (output / "catalog.json").write_text(json.dumps(report.to_json(), indent=2) + "\n")
    (output / "catalog.md").write_text(markdown(report, skipped) + "\n")
    charts = [output / f"catalog-{chart.key}.png" for chart in CHARTS if chart.key not in skipped]
    return [output / "catalog.json", output / "catalog.md", *charts]


def main() -> int:
    from shared.logs import configure_logging

    configure_logging("catalog_report")
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--catalog", type=Path, required=True, help="folder with catalog.csv and images")
    parser.add_argument("--output", type=Path, default=Path("reports"))
    args = parser.parse_args()
    try:
        report = build_report(args.catalog, label=str(args.catalog))
    except CatalogError as exc:
        logger.error("cannot read the catalog", extra={"error": str(exc)})
        return 1
    files = write_report(report, args.output)
    logger.info(
        "catalog report written",
        extra={"files": [str(f) for f in files], "products": report.products, "indexable": report.indexable},
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
