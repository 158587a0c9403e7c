"""/docs and /redoc in real headless Chromium with every request outside the API refused: the pages and
their assets come from the API itself (an installed package), so the operations show with no network."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, Route, expect

from tests.query_api.browser import launched_chromium, screenshot_path

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with launched_chromium() as launched:
        yield launched


def _offline(base: str, refused: list[str]) -> object:
    def handle(route: Route) -> None:
        if route.request.url.startswith(base + "/"):
            route.continue_()
        else:
            refused.append(route.request.url)
            route.abort("internetdisconnected")

    return handle


def test_swagger_ui_shows_every_operation_with_no_network(browser: Browser, served_api: httpx.Client) -> None:
    base = str(served_api.base_url).rstrip("/")
    operations = [
        (method.upper(), path)
        for path, item in served_api.get("/openapi.json").json()["paths"].items()
        for method in item
    ]
    refused: list[str] = []
    context = browser.new_context()
    context.route("**/*", _offline(base, refused))  # type: ignore[arg-type]
    page = context.new_page()

    page.goto(base + "/docs")

    expect(page.locator(".opblock")).to_have_count(len(operations), timeout=30_000)
    shown = page.locator(".opblock .opblock-summary-method").all_inner_texts()
    assert sorted(shown) == sorted(method for method, _ in operations)
    assert "GET" in shown and refused == []
    page.screenshot(path=screenshot_path("console-docs-offline.png"))
    context.close()


def test_redoc_renders_with_no_network(browser: Browser, served_api: httpx.Client) -> None:
    base = str(served_api.base_url).rstrip("/")
    refused: list[str] = []
    context = browser.new_context()
    context.route("**/*", _offline(base, refused))  # type: ignore[arg-type]
    page = context.new_page()

    page.goto(base + "/redoc")

    expect(page.locator("h1").first).to_contain_text("agentledger query API", timeout=30_000)
    assert refused == []
    context.close()


def test_only_the_known_assets_are_served(served_api: httpx.Client) -> None:
    script = served_api.get("/docs/assets/swagger-ui-bundle.js")

    assert (script.status_code, script.headers["content-type"]) == (200, "text/javascript; charset=utf-8")
    assert script.content.startswith(b"/*! For license information")
    missing = served_api.get("/docs/assets/index.html")
    assert (missing.status_code, missing.json()) == (404, {"detail": "no documentation asset 'index.html'"})
    assert served_api.get("/docs/assets/..%2F__init__.py").status_code == 404
