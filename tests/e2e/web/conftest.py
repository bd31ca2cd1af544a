"""The browser tests: the built web app (edge_proxy/webapp/, `python scripts/web.py build`) served
by a real Envoy in front of a stack of their own (its own database; the gateway on a port chosen
before start, because the tweets service must know the /media/ URL when it starts; the black-box
tests' limits: 5 tweets a minute per user, generous elsewhere), driven with Playwright through
Debian's Chromium (/usr/bin/chromium; `playwright install` is never needed)."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import psycopg
import pytest
import pytest_asyncio
from playwright.async_api import Browser, BrowserContext, Page, ViewportSize, async_playwright

from chirp_app.stack import Stack, start_stack
from tests.conftest import settings_for_tests
from tests.helpers.api import Api, api_for

ROOT = Path(__file__).resolve().parents[3]
WEB_ROOT = ROOT / "edge_proxy" / "webapp"
LIMITS_FILE = ROOT / "tests" / "e2e" / "limits.yaml"
CHROMIUM = Path(os.environ.get("CHIRP_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP: ViewportSize = {"width": 1000, "height": 900}
PHONE: ViewportSize = {"width": 390, "height": 844}

NewPage = Callable[..., Awaitable[Page]]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if CHROMIUM.is_file():
        return
    reason = f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    for item in items:
        if item.path.is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="package")
def database_url(postgres_server: str) -> Iterator[str]:
    name = f"chirp_web_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield psycopg.conninfo.make_conninfo(postgres_server, dbname=name)
    finally:
        with psycopg.connect(postgres_server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def stack(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    assert (WEB_ROOT / "index.html").is_file(), "no built web app: run `python scripts/web.py build`"
    data_dir = tmp_path_factory.mktemp("web-stack")
    settings = settings_for_tests(
        database_url,
        data_dir,
        # Envoy's port: chosen by start_stack before the services start (media URLs name it).
        http_port=0,
        auth_port=0,
        rate_limits=str(LIMITS_FILE),
        web_root=WEB_ROOT,
        envoy_access_log=str(data_dir / "access.log"),
    )
    running = await start_stack(settings, with_edge=True)
    yield running
    await running.stop()


@pytest.fixture(scope="package")
def app_url(stack: Stack) -> str:
    assert stack.edge is not None
    return stack.edge.url


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def api(stack: Stack) -> AsyncIterator[Api]:
    async with api_for(stack) as api:
        yield api


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        await launched.close()


@pytest_asyncio.fixture(loop_scope="session")
async def new_page(browser: Browser, app_url: str) -> AsyncIterator[NewPage]:
    """Opens a page in a browser context of its own (one person each), closed after the test;
    any uncaught error in a page fails the test."""
    contexts: list[BrowserContext] = []
    errors: list[str] = []

    async def open_page(viewport: ViewportSize | None = None) -> Page:
        context = await browser.new_context(base_url=app_url, viewport=viewport or DESKTOP)
        context.set_default_timeout(10_000)
        contexts.append(context)
        page = await context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        return page

    yield open_page
    for context in contexts:
        await context.close()
    assert not errors, f"errors in the page: {errors}"
