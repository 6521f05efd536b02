"""Browser fixtures: the real app served by uvicorn on a free local port, and Debian's
Chromium driven by Playwright (never a downloaded browser). One browser per session; a fresh
context (cookies, storage) per test. A failing browser test leaves a screenshot under
.lms-data/screenshots/."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from playwright.async_api import Browser, Page, async_playwright

from lms.app import create_app
from lms.settings import PROJECT_ROOT, Settings

CHROMIUM = os.environ.get("LMS_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = PROJECT_ROOT / ".lms-data" / "screenshots"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"report_{report.when}", report)


@pytest.fixture(scope="session")
def live_server(settings: Settings) -> Iterator[str]:
    """The whole app (API and pages) as a newcomer runs it, against the test database,
    with its own engine in the server's own event loop."""
    port = free_port()
    # A small pool: the database server is shared with the test process's own pool.
    app = create_app(settings.model_copy(update={"db_pool_size": 4, "db_max_overflow": 4}))
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                            lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="live-server", daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(base + "/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("the live server did not start")
        time.sleep(0.05)
    yield base
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="session")
async def chromium() -> AsyncIterator[Browser]:
    assert shutil.which(CHROMIUM), f"{CHROMIUM} is missing: apt-get install chromium"
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            # As root (containers, CI) Chromium refuses to start with its sandbox.
            args=["--no-sandbox"] if os.geteuid() == 0 else [])
        yield browser
        await browser.close()


async def new_page(chromium: Browser, live_server: str, **options: Any) -> Page:
    context = await chromium.new_context(base_url=live_server, locale="en-GB", **options)
    context.set_default_timeout(10_000)
    return await context.new_page()


@pytest.fixture
async def page(chromium: Browser, live_server: str,
               request: pytest.FixtureRequest) -> AsyncIterator[Page]:
    tab = await new_page(chromium, live_server)
    yield tab
    await screenshot_if_failed(request, tab)
    await tab.context.close()


async def screenshot_if_failed(request: pytest.FixtureRequest, tab: Page) -> None:
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed and not tab.is_closed():
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{request.node.name}.png"
        await tab.screenshot(path=str(path), full_page=True)
        print(f"screenshot: {path}")

