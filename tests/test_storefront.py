"""The storefront page in a real browser: Debian's chromium driven by Playwright, against the running
stack (real services, real catalog, real dev photos). Screenshots go to reports/."""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, FilePayload, Locator, Page, Response, expect, sync_playwright

from tests.conftest import DEV, E2E, ROOT

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
REPORTS = ROOT / "reports"
LOOK = DEV / "ootd_model_model_8.png"  # full body: a top, jeans and shoes
TWO_MEN = DEV / "ultralytics_assets_zidane.jpg"
DESKTOP: dict[str, Any] = {"viewport": {"width": 1366, "height": 900}}
PHONE: dict[str, Any] = {
    "viewport": {"width": 390, "height": 844},
    "device_scale_factor": 2,
    "is_mobile": True,
    "has_touch": True,
}
NAMES = {
    "topwear": "Topwear",
    "bottomwear": "Bottomwear",
    "footwear": "Footwear",
    "dress": "Dress",
    "outerwear": "Outerwear",
    "accessories": "Accessories",
}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make browser` installs Debian's chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM))
        yield browser
        browser.close()


@contextmanager
def storefront(browser: Browser, gateway: str, device: dict[str, Any]) -> Iterator[Page]:
    """The page at /, failing the test if it loads anything from elsewhere or throws."""
    context = browser.new_context(**device)
    page = context.new_page()
    elsewhere: list[str] = []
    errors: list[str] = []
    page.on(
        "request",
        lambda r: None if r.url.startswith((gateway, "blob:", "data:")) else elsewhere.append(r.url),
    )
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{gateway}/")
    expect(page.get_by_role("heading", name="Upload a look")).to_be_visible()
    try:
        yield page
    finally:
        context.close()
    assert elsewhere == [], f"the page loaded things from elsewhere: {elsewhere}"
    assert errors == [], errors


def upload(page: Page, photo: Path | FilePayload) -> Response:
    with page.expect_response(lambda r: "/recommend" in r.url) as answer:
        page.locator("#file").set_input_files(photo)
    return answer.value


def drop(page: Page, photo: Path) -> Response:
    """Drag and drop, as a shopper does from the desktop or a phone's file browser."""
    script = """([name, data]) => {
        const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], name, { type: "image/jpeg" }));
        const zone = document.querySelector("#dropzone");
        for (const type of ["dragenter", "dragover", "drop"]) {
            zone.dispatchEvent(new DragEvent(type, { bubbles: true, cancelable: true, dataTransfer: transfer }));
        }
    }"""
    with page.expect_response(lambda r: "/recommend" in r.url) as answer:
        page.evaluate(script, [photo.name, base64.b64encode(photo.read_bytes()).decode()])
    return answer.value


def product_ids(row: Locator) -> list[str]:
    return [str(i) for i in row.locator(".product").evaluate_all("cs => cs.map(c => c.dataset.productId)")]


def assert_look_drawn(page: Page, answer: dict[str, Any]) -> None:
    """A box per item and person, labelled, placed over the photo; a row per item, in order."""
    items = answer["items"]
    expect(page.get_by_role("img", name=re.compile("^Your photo"))).to_be_visible()
    expect(page.locator(".box.item")).to_have_count(len(items))
    expect(page.locator(".box.person")).to_have_count(len(answer["persons"]))
    expect(page.locator(".row")).to_have_count(len(items))
    for index, item in enumerate(items):
        label = page.locator(f'.box.item[data-item="{index}"] .box-label')
        expect(label).to_have_text(item_label(index, item))
        row = page.locator(f"#row-{index}")
        expect(row.locator("h3")).to_contain_text(NAMES[item["category"]])
        assert product_ids(row) == [r["product_id"] for r in item["recommendations"]]
        cards = row.get_by_role("button", name=re.compile(r"^More like this: .+, score \d\.\d\d$"))
        expect(cards).to_have_count(len(item["recommendations"]))
        assert_box_over_photo(page, f'.box.item[data-item="{index}"]', item["box"], answer["image"])
    for index, person in enumerate(answer["persons"]):
        label = page.locator(f'.box.person[data-person="{index}"] .box-label')
        expect(label).to_contain_text(f"Person {index + 1}")
        expect(label).to_contain_text("full shot" if person["full_shot"] else "partial shot")
        if person["gender"]["label"] != "unknown":
            expect(label).to_contain_text(person["gender"]["label"])


def item_label(index: int, item: dict[str, Any]) -> str:
    parts = (NAMES[item["category"]], item["article_type"], item["colour"])
    return f"{index + 1} " + " · ".join(p for p in parts if p)


def assert_box_over_photo(page: Page, selector: str, box: list[float], image: dict[str, int]) -> None:
    photo = page.locator("#photo").bounding_box()
    drawn = page.locator(selector).bounding_box()
    assert photo is not None and drawn is not None
    scale_x, scale_y = photo["width"] / image["width"], photo["height"] / image["height"]
    expected = (
        photo["x"] + box[0] * scale_x,
        photo["y"] + box[1] * scale_y,
        (box[2] - box[0]) * scale_x,
        (box[3] - box[1]) * scale_y,
    )
    got = (drawn["x"], drawn["y"], drawn["width"], drawn["height"])
    assert all(abs(a - b) <= 2 for a, b in zip(got, expected, strict=True)), (selector, got, expected)


def wait_for_images(page: Page) -> None:
    """Every image loaded; the product images load lazily, so the page is scrolled through first
    (on a phone, rows far below the fold are not even requested until then)."""
    height, step = page.evaluate("[document.documentElement.scrollHeight, window.innerHeight]")
    for top in range(0, height + step, step):
        page.evaluate(f"window.scrollTo(0, {top})")
        page.wait_for_timeout(50)
    page.wait_for_function("[...document.images].every((i) => i.complete)")
    broken = page.evaluate(
        "[...document.querySelectorAll('.product img')].filter((i) => !i.naturalWidth).length"
    )
    assert broken == 0, f"{broken} product images did not load"


def more_like_this(page: Page, row: Locator, card: Locator, press: str | None = None) -> dict[str, Any]:
    """Ask for more like the card's product, by click or by key; check the row shows the answer."""
    liked = str(card.get_attribute("data-product-id"))
    with page.expect_response(lambda r: r.url.endswith("/similar")) as similar:
        if press:
            card.focus()
            page.keyboard.press(press)
        else:
            card.click()
    assert similar.value.status == 200, similar.value.text()
    sent = similar.value.request.post_data_json
    assert sent is not None and sent["positive"] == [liked]
    assert sent["categories"] == row.get_attribute("data-category")
    answer: dict[str, Any] = similar.value.json()
    expect(row).to_have_attribute("data-mode", "similar")
    expect(row).to_have_attribute("data-like", liked)
    expect(row.locator(".mode-text")).to_contain_text("More like")
    ids = [r["product_id"] for r in answer["recommendations"]]
    assert ids and liked not in ids
    assert product_ids(row) == ids
    return answer


def test_upload_shows_boxes_rows_and_more_like_this(e2e: E2E, browser: Browser) -> None:
    with storefront(browser, e2e.gateway, DESKTOP) as page:
        response = upload(page, LOOK)
        assert response.status == 200, response.text()
        answer = response.json()
        categories = [i["category"] for i in answer["items"]]
        assert {"topwear", "bottomwear", "footwear"} <= set(categories), categories
        assert_look_drawn(page, answer)
        expect(page.locator("#status")).to_contain_text(f"Found {len(categories)} items on 1 person")
        expect(page.locator("#degraded")).to_be_hidden()
        wait_for_images(page)
        REPORTS.mkdir(exist_ok=True)
        page.screenshot(path=REPORTS / "storefront-desktop.png", full_page=True)

        row = page.locator("#row-0")
        before = product_ids(row)
        request = more_like_this(page, row, row.locator(".product").first)
        assert product_ids(row) != before
        assert {r["category"] for r in request["recommendations"]} == {categories[0]}
        other = page.locator("#row-1")
        untouched = product_ids(other)
        more_like_this(page, other, other.locator(".product").nth(1), press="Enter")
        assert product_ids(other) != untouched
        expect(other.locator(".product").first).to_be_focused()
        more_like_this(page, other, other.locator(".product").first, press=" ")
        row.locator(".back").click()
        expect(row).to_have_attribute("data-mode", "look")
        assert product_ids(row) == before


def test_controls_override_gender_filter_categories_and_k(e2e: E2E, browser: Browser) -> None:
    with storefront(browser, e2e.gateway, DESKTOP) as page:
        upload(page, LOOK)
        expect(page.locator(".row")).not_to_have_count(0)
        with page.expect_response(
            lambda r: (
                "/recommend" in r.url and "k=2" in r.url and "gender=Men" in r.url and "categories=" in r.url
            )
        ) as final:
            for name in ("Topwear", "Footwear", "Dress", "Outerwear", "Accessories"):
                page.get_by_label(name, exact=True).uncheck()
            page.get_by_label("Products per item").fill("2")
            page.get_by_label("Products per item").press("Tab")
            page.get_by_label("Gender").select_option("Men")
        assert "categories=bottomwear" in final.value.url
        answer = final.value.json()
        assert [i["category"] for i in answer["items"]] == ["bottomwear"]
        expect(page.locator(".row")).to_have_count(1)
        expect(page.locator("#row-0 .product")).to_have_count(len(answer["items"][0]["recommendations"]))
        assert 0 < len(answer["items"][0]["recommendations"]) <= 2
        assert {r["gender"] for r in answer["items"][0]["recommendations"]} <= {"Men", "Unisex"}
        expect(page.locator("#people")).to_contain_text("Men · chosen")
        page.get_by_label("Bottomwear", exact=True).uncheck()
        expect(page.locator("#submit")).to_be_disabled()
        expect(page.locator("#status")).to_contain_text("Pick at least one category")


def test_phone_drop_of_two_people(e2e: E2E, browser: Browser) -> None:
    with storefront(browser, e2e.gateway, PHONE) as page:
        expect(page.get_by_role("button", name="Take a photo")).to_be_visible()
        response = drop(page, TWO_MEN)
        assert response.status == 200, response.text()
        answer = response.json()
        assert len(answer["persons"]) == 2 and answer["items"]
        assert_look_drawn(page, answer)
        width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert width[0] <= width[1], f"the page is wider than the phone: {width}"
        expect(page.locator("#look")).to_be_in_viewport()  # a new photo's answer is scrolled into view
        wait_for_images(page)
        page.evaluate("window.scrollTo(0, 0)")  # else the sticky header is drawn mid-page
        page.screenshot(path=REPORTS / "storefront-phone.png", full_page=True)
        row = page.locator("#row-0")
        more_like_this(page, row, row.locator(".product").first)


def test_a_file_that_is_not_an_image_shows_the_servers_message(e2e: E2E, browser: Browser) -> None:
    with storefront(browser, e2e.gateway, DESKTOP) as page:
        upload(page, LOOK)
        expect(page.locator(".row")).not_to_have_count(0)
        response = upload(page, {"name": "notes.jpg", "mimeType": "image/jpeg", "buffer": b"not a photo"})
        assert response.status == 400
        alert = page.get_by_role("alert")
        expect(alert).to_be_visible()
        expect(alert).to_contain_text(response.json()["detail"])
        expect(alert).to_contain_text("could not be read")
        expect(page.locator(".row")).to_have_count(0)
        expect(page.locator("#look")).to_be_hidden()


def test_a_photo_over_the_limit_shows_the_servers_message(e2e: E2E, browser: Browser) -> None:
    with (
        e2e.variant(("gateway",), {"GATEWAY_MAX_UPLOAD_BYTES": "20000"}) as small,
        storefront(browser, small.url("gateway"), PHONE) as page,
    ):
        response = upload(page, LOOK)
        assert response.status == 413
        alert = page.get_by_role("alert")
        expect(alert).to_contain_text("too large")
        expect(alert).to_contain_text(response.json()["detail"])


def test_the_page_stays_usable_when_the_detector_is_down(e2e: E2E, browser: Browser) -> None:
    with (
        e2e.variant(("gateway",), {}, down=("detector-service",)) as degraded,
        storefront(browser, degraded.url("gateway"), DESKTOP) as page,
    ):
        response = upload(page, LOOK)
        assert response.status == 200, response.text()
        answer = response.json()
        assert "detector" in answer["degraded"]
        notice = page.locator("#degraded")
        expect(notice).to_be_visible()
        expect(notice).to_contain_text("Item detection failed")
        assert_look_drawn(page, answer)
        row = page.locator("#row-0")
        more_like_this(page, row, row.locator(".product").first)
