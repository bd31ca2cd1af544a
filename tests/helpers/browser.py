"""What the browser tests do as a person would: sign up, log in, post; and a picture to post."""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Awaitable
from typing import Any, cast

from playwright.async_api import Locator, Page, expect

from tests.helpers.rest import PASSWORD


async def rpc(call: object) -> Any:
    """Awaits a call of the test stack's grpc.aio stubs (typed as blocking calls by grpc-stubs)."""
    return await cast(Awaitable[Any], call)


def dusk_png(width: int = 480, height: int = 270) -> bytes:
    """A PNG of a dusk sky over hills, made here (no file to ship)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    rows = bytearray()
    for y in range(height):
        rows.append(0)
        for x in range(width):
            hill = height * 0.62 + 28 * ((x / width * 6.3) % 3.14 - 1.57) ** 2 / 2.5
            if y > hill:
                rows += bytes((30 + y // 12, 90 + y // 6, 60))
            else:
                t = y / height
                rows += bytes((int(250 - 120 * t), int(170 - 60 * t), int(120 + 100 * t)))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(bytes(rows), 9))
        + chunk(b"IEND", b"")
    )


async def sign_up(page: Page, handle: str, display_name: str, password: str = PASSWORD) -> str:
    """Signs up through the form (which logs in) and returns the new user's ID."""
    await page.goto("/")
    await page.get_by_role("navigation", name="Main").get_by_role("link", name="Sign up").click()
    await page.get_by_label("Handle").fill(handle)
    await page.get_by_label("Display name (optional)").fill(display_name)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Sign up").click()
    return await _home_user_id(page, handle)


async def log_in(page: Page, handle: str, password: str = PASSWORD) -> str:
    await page.goto("/#/login")
    await page.get_by_label("Handle").fill(handle)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Log in").click()
    return await _home_user_id(page, handle)


async def _home_user_id(page: Page, handle: str) -> str:
    await expect(page.get_by_role("heading", name="Home")).to_be_visible()
    me = page.get_by_role("navigation", name="Main").get_by_role("link", name=f"@{handle}")
    href = await me.get_attribute("href")
    assert href is not None
    match = re.fullmatch(r"#/u/(\d+)", href)
    assert match, href
    return match.group(1)


def compose(page: Page) -> Locator:
    return page.get_by_role("form", name="What's happening?")


def timeline(page: Page) -> Locator:
    return page.get_by_role("list", name="Home timeline")


def tweet(scope: Page | Locator, text: str) -> Locator:
    """The tweet (an article) whose text contains `text`."""
    return scope.get_by_role("article").filter(has_text=text)
