"""End to end in Chromium: an agent's adjustment above the limit, approved by a supervisor,
then seen by the member in their statement; and the console's pages at phone width."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.async_api import Browser, Page, expect

from lms.db import Database
from lms.settings import Settings
from tests.factories import unique_email
from tests.web.conftest import new_page, screenshot_if_failed
from tests.web.console_support import member_with_miles
from tests.web.support import PASSWORD, STAFF_PASSWORD, create_staff
from tests.web.test_browser import fits

pytestmark = pytest.mark.slow


async def console_sign_in(page: Page, email: str) -> None:
    await page.goto("/console")
    await expect(page).to_have_url(re.compile(r"/console/sign-in"))
    await page.get_by_label("E-mail").fill(email)
    await page.get_by_label("Password").fill(STAFF_PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Find a member")


async def test_adjustment_above_the_limit_is_approved_and_seen_by_the_member(
        page: Page, chromium: Browser, live_server: str, app: Any, db: Database,
        settings: Settings, in_ledger: Any, request: pytest.FixtureRequest) -> None:
    email = unique_email("adjusted")
    member = await member_with_miles(app, db, in_ledger, 1000, email=email,
                                     firstName="Dorothy", lastName="Vaughan")

    # The agent finds the member and asks for more than their limit (5,000).
    await console_sign_in(page, await create_staff(db, settings, "agent"))
    await page.get_by_label("Card number or e-mail").fill(member["cardNumber"])
    await page.get_by_label("Card number or e-mail").press("Enter")
    await page.get_by_role("link", name="Dorothy Vaughan").click()
    await expect(page.get_by_role("heading", level=1)).to_contain_text("Dorothy Vaughan")
    await page.get_by_label("Reason code").select_option("SERVICE_RECOVERY")
    await page.get_by_label("Note").fill("Downgraded on LM 204")
    # A decimal amount is refused beside the field, the other values kept.
    await page.get_by_label("Amount").fill("12.5")
    await page.get_by_role("button", name="Adjust", exact=True).click()
    await expect(page.locator("#f-amount-error")).to_contain_text("whole number")
    await expect(page.get_by_label("Amount")).to_have_attribute("aria-invalid", "true")
    await expect(page.get_by_label("Note")).to_have_value("Downgraded on LM 204")
    await page.get_by_label("Amount").fill("12,500")
    await page.get_by_role("button", name="Adjust", exact=True).click()
    await expect(page.locator("#done")).to_contain_text("waits for a supervisor")
    await expect(page.locator("#adjustments")).to_contain_text("Waiting for a supervisor")
    await expect(page.get_by_role("link", name="Approvals")).to_have_count(0)

    # A supervisor approves it in the queue.
    supervisor = await new_page(chromium, live_server)
    try:
        await console_sign_in(supervisor, await create_staff(db, settings, "supervisor"))
        await supervisor.get_by_role("link", name="Approvals").click()
        await expect(supervisor.get_by_role("heading", level=1)).to_have_text("Approvals")
        item = supervisor.locator("li.card", has_text=member["cardNumber"])
        await expect(item).to_contain_text("+12,500")
        await expect(item).to_contain_text("Downgraded on LM 204")
        await item.get_by_label("Decision note").fill("Confirmed with the station")
        await item.get_by_role("button", name="Approve").click()
        await expect(supervisor.locator("#done")).to_contain_text("approved and posted")
        await expect(supervisor.locator("li.card", has_text=member["cardNumber"])
                     ).to_have_count(0)
    finally:
        await screenshot_if_failed(request, supervisor)
        await supervisor.context.close()

    # The member signs in to the portal and sees the miles in the statement.
    portal = await new_page(chromium, live_server)
    try:
        await portal.goto("/sign-in")
        await portal.get_by_label("E-mail").fill(email)
        await portal.get_by_label("Password").fill(PASSWORD)
        await portal.get_by_role("button", name="Sign in").click()
        await expect(portal.locator("#balance")).to_contain_text("13,500")
        await portal.get_by_role("link", name="Statement", exact=True).click()
        row = portal.locator("tbody#rows tr").first
        await expect(row).to_contain_text("+12,500")
        await expect(row).to_contain_text("Adjustment")
    finally:
        await screenshot_if_failed(request, portal)
        await portal.context.close()


async def test_console_pages_fit_a_phone(chromium: Browser, live_server: str, app: Any,
                                         db: Database, settings: Settings, in_ledger: Any,
                                         request: pytest.FixtureRequest) -> None:
    member = await member_with_miles(app, db, in_ledger, 987654321)
    phone = await new_page(chromium, live_server, viewport={"width": 360, "height": 740},
                           is_mobile=True, has_touch=True, device_scale_factor=2)
    try:
        await console_sign_in(phone, await create_staff(db, settings, "supervisor"))
        page = f"/console/members/{member['id']}"
        await phone.goto(page)
        await phone.get_by_label("Amount").fill("60000")
        await phone.get_by_label("Reason code").select_option("GOODWILL")
        await phone.get_by_label("Note").fill("A long note " * 20)
        await phone.get_by_role("button", name="Adjust", exact=True).click()
        await expect(phone.locator("#done")).to_be_visible()
        for path in (page, "/console", "/console/approvals", "/console/audit",
                     f"/console/audit?card={member['cardNumber']}"):
            await phone.goto(path)
            assert await fits(phone), path
        await phone.goto(page)
        await phone.keyboard.press("Tab")
        outline = await phone.evaluate(
            "() => getComputedStyle(document.activeElement).outlineStyle")
        assert outline != "none"
    finally:
        await screenshot_if_failed(request, phone)
        await phone.context.close()
