"""The catalog in a real browser: Debian's headless Chromium, driven by Playwright, against a real
`modelhub serve`. Find a model, read it, run it, compare versions, download a file; a hostile
card runs nothing and reaches no other host; a private hub signs people in.

Screenshots of the list and a model page go to $MODELHUB_SCREENSHOTS when it is set (the
README's come from
`MODELHUB_SCREENSHOTS=docs/screenshots make test PYTEST_ARGS=tests/hub/catalog/test_browser.py`).
"""
from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from urllib.parse import urlparse

import pytest

from hub.registry import Registry
from tests.support.processes import REPO, running_hub

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]

pytestmark = pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("CI_REQUIRE_CHROMIUM"),
    reason="Debian's chromium is not installed (apt-get install chromium)")

CARD = """---
license: apache-2.0
datasets: [numbers]
---
# Half plus two

It computes **0.5 x + 2** for every value it gets.
"""
HOSTILE_CARD = """# Innocent

<script>alert("script")</script>

<img src="x" onerror="alert('onerror')">

[click me](javascript:alert('link'))

<a href="javascript:alert('anchor')">anchor</a>

<svg onload="alert('svg')"><script>alert('svg')</script></svg>

![tracker](https://tracker.example.com/pixel.png)

<iframe src="https://example.org/"></iframe>
"""


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    assert CHROMIUM, "CI_REQUIRE_CHROMIUM is set but chromium is not installed"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def catalog_server(tmp_path_factory, examples):
    root = tmp_path_factory.mktemp("catalog-browser")
    store = str(root / "store")
    registry = Registry.open(store)
    registry.publish(examples["half_plus_two"], "hpt", description="Half plus two",
                     tags={"task": "regression"}, license="Apache-2.0", model_card=CARD,
                     aliases=["stable"])
    registry.publish(examples["half_plus_two"], "hpt", description="Half plus two, again",
                     model_card=CARD)
    registry.publish(examples["image_classifier"], "vision/cnn",
                     description="A small image classifier", tags={"task": "images"})
    registry.publish(examples["multi_io"], "evil", description="A card full of tricks",
                     model_card=HOSTILE_CARD)
    with running_hub(store, root / "server.log",
                     env={"MODELHUB_SERVING_CACHE": str(root / "cache")},
                     args=("--role", "all", "--workers", "1", "--device", "cpu")) as server:
        yield server


@pytest.fixture
def page(browser, catalog_server):
    context = browser.new_context(base_url=catalog_server.url, accept_downloads=True)
    opened = context.new_page()
    opened.dialogs, opened.elsewhere = [], []
    opened.on("dialog", lambda dialog: (opened.dialogs.append(dialog.message), dialog.dismiss()))
    opened.on("request", lambda request: opened.elsewhere.append(request.url)
              if urlparse(request.url).hostname not in ("127.0.0.1", None) else None)
    yield opened
    context.close()


def screenshot(page, name: str) -> None:
    folder = os.environ.get("MODELHUB_SCREENSHOTS")
    if folder:
        path = Path(folder) if Path(folder).is_absolute() else REPO / folder
        path.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(path / name), full_page=True)


def test_find_read_try_compare_and_download(page, catalog_server):
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto("/")
    assert page.locator("a[href='/models/vision/cnn']").count() == 1
    screenshot(page, "catalog-list.png")
    page.fill("#q", "half")
    page.click("header form.search button")
    page.wait_for_url("**/?q=half")
    assert page.locator("a[href='/models/vision/cnn']").count() == 0
    page.click("a[href='/models/hpt']")
    page.wait_for_url("**/models/hpt")
    assert page.locator(".card h1").inner_text() == "Half plus two"
    captions = page.locator("table.signature caption code").all_inner_texts()
    assert {"serving_default", "classify_x_to_y", "regress_x_to_y"} <= set(captions)
    assert page.locator("#serving").inner_text().count("AVAILABLE") >= 1
    screenshot(page, "catalog-model.png")

    # try it: the prefilled body (zeros) through /v1 :predict
    page.fill("#try-body", '{"inputs": {"x": [1.0, 2.0, 5.0]}}')
    page.click("#try-form button")
    page.wait_for_selector("#try-result[data-status]")
    assert page.get_attribute("#try-result", "data-status") == "200"
    assert page.get_attribute("#try-result", "data-runtime") == "tensorflow"
    answer = page.locator("#try-result pre").inner_text()
    assert "2.5" in answer and "3" in answer and "4.5" in answer
    assert "ms, answered by tensorflow" in page.locator("#try-result p").inner_text()

    # a version and what changed
    page.click("table.versions a[href='/models/hpt/1']")
    page.wait_for_url("**/models/hpt/1")
    assert "The first version." in page.locator("#changes").inner_text()
    page.goto("/models/hpt/2")
    assert "compatible with existing callers" in page.locator("#changes").inner_text()

    # a file, downloaded, is what its sha256 says
    row = page.locator("table.files tr", has_text="saved_model.pb")
    expected = row.locator("code.sha").inner_text()
    with page.expect_download() as info:
        row.locator("a").click()
    data = Path(info.value.path()).read_bytes()
    assert hashlib.sha256(data).hexdigest() == expected
    assert page.dialogs == [] and page.elsewhere == []


def test_an_uploaded_image_is_resized_and_classified(page, catalog_server, tmp_path):
    import numpy as np

    png = tmp_path / "picture.png"
    _write_png(png, (np.random.default_rng(1).random((48, 64, 3)) * 255).astype(np.uint8))
    page.goto("/models/vision/cnn")
    page.set_input_files("#try-image", str(png))
    page.wait_for_function("document.getElementById('try-body').value.length > 1000")
    page.click("#try-form button")
    page.wait_for_selector("#try-result[data-status]")
    assert page.get_attribute("#try-result", "data-status") == "200"
    import json

    (probabilities,) = json.loads(page.locator("#try-result pre").inner_text())["outputs"]
    assert len(probabilities) == 10 and abs(sum(probabilities) - 1) < 1e-3


def test_a_hostile_card_runs_nothing_and_reaches_no_other_host(page, catalog_server):
    page.goto("/models/evil")
    page.wait_for_load_state("networkidle")
    assert page.locator(".card h1").inner_text() == "Innocent"
    assert page.locator(".card script, .card svg, .card iframe, .card [onerror]").count() == 0
    hrefs = page.locator(".card a").evaluate_all("links => links.map(a => a.href)")
    assert not any(h.lower().startswith("javascript:") for h in hrefs)
    page.click(".card a:has-text('anchor')")  # a link that lost its href goes nowhere
    assert page.dialogs == [], page.dialogs
    assert page.elsewhere == [], page.elsewhere


def test_the_pages_fit_a_phone_and_work_by_keyboard(page, catalog_server):
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto("/models/hpt")
    width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert width[0] <= width[1] + 1, width  # no sideways scrolling
    page.goto("/")
    page.keyboard.press("Tab")  # the brand link
    page.keyboard.press("Tab")  # the search field
    assert page.evaluate("document.activeElement.id") == "q"
    page.keyboard.type("images")
    page.keyboard.press("Enter")
    page.wait_for_url("**/?q=images")
    assert page.locator("a[href='/models/vision/cnn']").count() == 1
    unlabeled = page.evaluate(
        "[...document.querySelectorAll('input:not([type=hidden]), select, textarea')]"
        ".filter(e => !e.labels || e.labels.length === 0).map(e => e.id)")
    assert unlabeled == []


def test_a_private_hub_asks_for_a_token_and_signs_out(browser, tmp_path, examples):
    store = str(tmp_path / "store")
    Registry.open(store).publish(examples["half_plus_two"], "hpt", description="Private")
    with running_hub(store, tmp_path / "server.log",
                     env={"MODELHUB_ANONYMOUS_READ": "false"}) as server:
        context = browser.new_context(base_url=server.url)
        page = context.new_page()
        page.goto("/models/hpt")
        assert "/sign-in" in page.url
        page.fill("#token", server.tokens["read"])
        page.click("form[action='/sign-in'] button")
        page.wait_for_url("**/models/hpt")
        assert "Private" in page.locator(".model-head").inner_text()
        cookie = next(c for c in context.cookies() if c["name"] == "modelhub_session")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        assert page.evaluate("document.cookie").find("modelhub_session") == -1
        page.click("nav.who button")  # signed out, back to "/", which asks for a token again
        page.wait_for_url("**/sign-in?next=/")
        assert not [c for c in context.cookies() if c["name"] == "modelhub_session"]
        context.close()


def _write_png(path: Path, pixels) -> None:
    """A PNG without an imaging library: zlib-compressed rows and the chunk CRCs."""
    import struct
    import zlib

    height, width, _ = pixels.shape
    raw = b"".join(b"\x00" + pixels[y].tobytes() for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + \
            struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    path.write_bytes(b"\x89PNG\r\n\x1a\n"
                     + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
