"""make catalog-report on a tiny catalog: columns missing or empty, a missing image, an unreadable
one, a repeated id. No service is started."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from gateway.catalog import CatalogError
from tools.catalog_report import NO_CATEGORY, UNKNOWN, build_report, write_report

# usage, season and year are absent; baseColour is there but empty (or NA) everywhere.
ROWS = """id,image,gender,masterCategory,subCategory,articleType,baseColour
1,images/1.jpg,Men,Apparel,Topwear,Tshirts,
2,images/2.jpg,Women,Apparel,Topwear,Jackets,
3,images/3.jpg,Women,Footwear,Shoes,Heels,
4,images/4.jpg,,Apparel,Innerwear,Briefs,
5,images/5.jpg,Men,Accessories,Watches,Watches,NA
5,images/5.jpg,Men,Accessories,Watches,Watches,
6,images/6.jpg,Men,Apparel,Bottomwear,Jeans,
"""


def tiny_catalog(folder: Path) -> Path:
    (folder / "images").mkdir(parents=True)
    (folder / "catalog.csv").write_text(ROWS)
    for product_id in ("1", "2", "3", "4", "6"):  # 5's image is missing
        Image.new("RGB", (40, 60), (200, 30, 30)).save(folder / "images" / f"{product_id}.jpg")
    (folder / "images" / "6.jpg").write_bytes(b"not a jpeg")
    return folder


def test_report_counts_problems_and_draws_valid_charts(tmp_path: Path) -> None:
    report = build_report(tiny_catalog(tmp_path / "catalog"), label="tiny")

    assert (report.rows, report.products, report.indexable) == (7, 6, 4)
    assert report.engine_error is None
    assert report.counts["gender"] == {"Men": 3, "Women": 2, UNKNOWN: 1}
    assert report.counts["category"] == {
        "accessories": 1,
        "bottomwear": 1,
        "footwear": 1,
        "outerwear": 1,
        "topwear": 1,
        NO_CATEGORY: 1,
    }
    assert report.counts["colour"] == {UNKNOWN: 6}
    assert "usage" not in report.counts and "season" not in report.counts
    assert set(report.columns_absent) == {"usage", "season", "year"}
    assert (report.repeated_ids.count, report.repeated_ids.first) == (1, ["5"])
    assert (report.missing_images.count, report.missing_images.first) == (1, ["5"])
    assert report.unreadable_images.first == ["6"]
    assert report.no_category.first == ["4"]
    assert report.category_by_gender["outerwear"] == {"Women": 1}
    jackets = {"masterCategory": "Apparel", "subCategory": "Topwear", "category": "outerwear", "products": 1}
    assert jackets in report.category_mapping

    output = tmp_path / "reports"
    output.mkdir()
    (output / "catalog-usage.png").write_bytes(b"stale chart of an earlier catalog")
    files = write_report(report, output)

    charts = sorted(p.name for p in output.glob("catalog-*.png"))
    assert charts == [
        "catalog-article-type.png",
        "catalog-category.png",
        "catalog-gender.png",
        "catalog-master-category.png",
        "catalog-sub-category.png",
    ]
    for name in charts:
        with Image.open(output / name) as image:
            image.verify()
            assert image.format == "PNG" and image.size[0] > 300 and image.size[1] > 100
    assert json.loads((output / "catalog.json").read_text())["missing_images"]["count"] == 1
    summary = (output / "catalog.md").read_text()
    assert "![Products by gender](catalog-gender.png)" in summary
    assert "colour (no product has a value)" in summary and "usage (no `usage` column)" in summary
    assert set(files) == {output / "catalog.json", output / "catalog.md"} | {output / n for n in charts}


def test_rows_without_an_id_are_reported_and_ingestion_refusal_named(tmp_path: Path) -> None:
    folder = tmp_path / "catalog"
    folder.mkdir()
    (folder / "catalog.csv").write_text("id,image\n1,a.jpg\n,b.jpg\n")

    report = build_report(folder)

    assert (report.invalid_rows.count, report.invalid_rows.first) == (1, ["3"])
    assert report.engine_error is not None and "line 3" in report.engine_error
    assert report.counts["category"] == {NO_CATEGORY: 1}
    assert report.columns_absent[:2] == ["gender", "masterCategory"]


def test_a_catalog_without_an_image_column_is_refused(tmp_path: Path) -> None:
    (tmp_path / "catalog.csv").write_text("id,name\n1,x\n")
    with pytest.raises(CatalogError, match="image"):
        build_report(tmp_path)
