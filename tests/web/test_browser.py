"""End to end in Chromium: what a member and an agent do, as they do it."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.async_api import Browser, Page, expect

from lms.db import Database
from lms.ledger.service import Ledger
from lms.ledger.types import EntryKind
from lms.settings import Settings
from tests.factories import TEST_ACTOR, unique_email
from tests.web.conftest import new_page, screenshot_if_failed
from tests.web.support import PASSWORD, STAFF_PASSWORD, account_of, create_staff

pytestmark = pytest.mark.slow


async def sign_up_in_browser(page: Page, email: str, first_name: str = "Ada") -> None:
    await page.goto("/sign-up")
    await page.get_by_label("First name").fill(first_name)
    await page.get_by_label("Last name").fill("Lovelace")
    await page.get_by_label("E-mail").fill(email)
    await page.get_by_label("Password", exact=True).fill(PASSWORD)
    await page.get_by_label("Password again").fill(PASSWORD)
    await page.get_by_role("button", name="Join", exact=True).click()
    await expect(page.get_by_role("heading", level=1)).to_have_text(f"Hello, {first_name}")


async def test_member_signs_up_sees_miles_and_reads_in_russian(
        page: Page, db: Database, in_ledger: Any) -> None:
    email = unique_email("chromium")
    await sign_up_in_browser(page, email)
    await expect(page.locator("#balance")).to_contain_text("0")

    await page.get_by_role("button", name="Sign out").click()
    await expect(page).to_have_url(re.compile(r"/sign-in"))
    await page.get_by_label("E-mail").fill(email)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Hello, Ada")

    _, account = await account_of(db, email)

    async def credit(ledger: Ledger) -> None:
        await ledger.credit(account, 4321, kind=EntryKind.ACCRUAL, actor=TEST_ACTOR,
                            description="Flight LHR-SVO")

    await in_ledger(credit)
    await page.reload()
    await expect(page.locator("#balance")).to_contain_text("4,321")

    await page.get_by_role("link", name="Statement", exact=True).click()
    row = page.locator("tbody#rows tr").first
    await expect(row).to_contain_text("Flight LHR-SVO")
    await expect(row).to_contain_text("+4,321")

    # The filters answer through htmx without a full page load.
    await page.get_by_label("Kind").select_option("gift")
    await expect(page.locator("#no-lines")).to_be_visible()
    await expect(page).to_have_url(re.compile(r"kind=gift"))

    await page.get_by_role("button", name="Русский").click()
    await expect(page.locator("html")).to_have_attribute("lang", "ru")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Выписка")
    await page.get_by_role("link", name="Обзор").click()
    await expect(page.get_by_role("heading", name="Ваши мили")).to_be_visible()
    await expect(page.locator("#balance")).to_contain_text("4")


async def test_agent_signs_in_and_finds_a_member(page: Page, db: Database,
                                                 settings: Settings,
                                                 chromium: Browser, live_server: str,
                                                 request: pytest.FixtureRequest) -> None:
    email = unique_email("found")
    member_tab = await new_page(chromium, live_server)
    try:
        await sign_up_in_browser(member_tab, email, first_name="Katherine")
        card = (await member_tab.locator(".notice").inner_text()).rsplit(" ", 1)[1].rstrip(".")
    finally:
        await screenshot_if_failed(request, member_tab)
        await member_tab.context.close()

    agent = await create_staff(db, settings, "agent")
    await page.goto("/console")
    await expect(page).to_have_url(re.compile(r"/console/sign-in"))
    await page.get_by_label("E-mail").fill(agent)
    await page.get_by_label("Password").fill(STAFF_PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Find a member")
    await page.get_by_label("Card number or e-mail").fill(card)
    await page.get_by_label("Card number or e-mail").press("Enter")
    await page.get_by_role("link", name="Katherine Lovelace").click()
    await expect(page.get_by_role("heading", level=1)).to_contain_text("Katherine Lovelace")
    await expect(page.get_by_text(email)).to_be_visible()


async def test_a_form_without_its_csrf_token_is_refused(page: Page) -> None:
    await page.goto("/sign-in")
    await page.locator('input[name="csrf_token"]').first.evaluate("e => e.remove()")
    await page.locator("form[action='/sign-in'] input[name='csrf_token']").evaluate_all(
        "all => all.forEach(e => e.remove())")
    await page.get_by_label("E-mail").fill("someone@example.com")
    await page.get_by_label("Password").fill("whatever it is")
    async with page.expect_response(lambda r: r.url.endswith("/sign-in")
                                    and r.request.method == "POST") as answer:
        await page.get_by_role("button", name="Sign in").click()
    assert (await answer.value).status == 403
    await expect(page.get_by_role("alert")).to_contain_text("security token")


async def test_phone_width_has_no_horizontal_scroll(chromium: Browser, live_server: str,
                                                    db: Database, in_ledger: Any,
                                                    request: pytest.FixtureRequest) -> None:
    phone = await new_page(chromium, live_server, viewport={"width": 360, "height": 740},
                           is_mobile=True, has_touch=True, device_scale_factor=2)
    try:
        await phone.goto("/sign-up")
        assert await fits(phone), "/sign-up"
        email = unique_email("phone")
        await sign_up_in_browser(phone, email, first_name="Marie-Sklodowska")
        _, account = await account_of(db, email)
        await in_ledger(lambda ledger: ledger.credit(
            account, 123456789, kind=EntryKind.ACCRUAL, actor=TEST_ACTOR,
            description="A rather long description of a flight from Ekaterinburg to "
                        "Petropavlovsk-Kamchatsky with a connection"))
        for path in ("/", "/statement", "/claims", "/profile", "/password/forgot"):
            await phone.goto(path)
            assert await fits(phone), path
        # Keyboard users see where they are.
        await phone.goto("/profile")
        await phone.keyboard.press("Tab")
        outline = await phone.evaluate(
            "() => getComputedStyle(document.activeElement).outlineStyle")
        assert outline != "none"
    finally:
        await screenshot_if_failed(request, phone)
        await phone.context.close()


async def fits(page: Page) -> bool:
    width: Any = await page.evaluate(
        "() => [document.documentElement.scrollWidth, window.innerWidth]")
    return bool(width[0] <= width[1])


async def test_member_gifts_miles_and_both_statements_show_it(
        page: Page, db: Database, in_ledger: Any, chromium: Browser, live_server: str,
        request: pytest.FixtureRequest) -> None:
    friend_email = unique_email("giftee")
    friend = await new_page(chromium, live_server)
    try:
        await sign_up_in_browser(friend, friend_email, first_name="Grace")
        card = (await friend.locator(".notice").inner_text()).rsplit(" ", 1)[1].rstrip(".")

        email = unique_email("giver")
        await sign_up_in_browser(page, email, first_name="Alan")
        await page.get_by_role("button", name="Sign out").click()
        await page.get_by_label("E-mail").fill(email)
        await page.get_by_label("Password").fill(PASSWORD)
        await page.get_by_role("button", name="Sign in").click()
        _, account = await account_of(db, email)
        await in_ledger(lambda ledger: ledger.credit(
            account, 12_000, kind=EntryKind.ACCRUAL, actor=TEST_ACTOR,
            description="Flight LHR-JFK"))
        await page.reload()
        await expect(page.locator("#balance")).to_contain_text("12,000")

        await page.get_by_role("link", name="Gifts", exact=True).click()
        await expect(page.get_by_role("heading", level=1)).to_have_text("Gift miles")
        await page.get_by_label("Recipient's card number").fill(card)
        await page.get_by_label("Recipient's last name").fill("LOVELACE")
        await page.get_by_label("Miles to give").fill("3000")
        # htmx shows what the gift costs, fee included, while the member types.
        await expect(page.locator("#fee-preview")).to_contain_text("You pay")
        await page.get_by_label("Message to the recipient").fill("For your trip <3")
        await page.get_by_role("button", name="Give the miles").click()
        await expect(page.locator("#gift-done")).to_contain_text("3,000 miles")
        await expect(page.locator("#gifts-sent")).to_contain_text("to Grace Lovelace")
        await expect(page.locator("#gifts-sent")).to_contain_text("For your trip <3")

        await page.get_by_role("link", name="Statement", exact=True).click()
        gift = page.locator("tbody#rows tr").first
        await expect(gift).to_contain_text("Gift from Alan Lovelace to Grace Lovelace")
        await expect(gift).to_contain_text("-3,")

        await friend.goto("/statement")
        received = friend.locator("tbody#rows tr").first
        await expect(received).to_contain_text("Gift from Alan Lovelace to Grace Lovelace")
        await expect(received).to_contain_text("+3,000")
        await friend.goto("/")
        await expect(friend.locator("#balance")).to_contain_text("3,000")
        await friend.goto("/gifts")
        await expect(friend.locator("#gifts-received")).to_contain_text("from Alan Lovelace")
    finally:
        await screenshot_if_failed(request, friend)
        await friend.context.close()


async def test_portal_in_both_languages_at_phone_width(
        chromium: Browser, live_server: str, db: Database, in_ledger: Any,
        request: pytest.FixtureRequest) -> None:
    phone = await new_page(chromium, live_server, viewport={"width": 375, "height": 667},
                           is_mobile=True, has_touch=True, device_scale_factor=2)
    try:
        email = unique_email("phone-ru")
        await sign_up_in_browser(phone, email, first_name="Sofia-Vasilievna")
        _, account = await account_of(db, email)
        await in_ledger(lambda ledger: ledger.credit(
            account, 987654321, kind=EntryKind.ACCRUAL, actor=TEST_ACTOR,
            description="Flight Vladivostok-Kaliningrad with a very long description"))
        pages = {"/": ("Hello, Sofia-Vasilievna", "Здравствуйте, Sofia-Vasilievna"),
                 "/gifts": ("Gift miles", "Подарить мили"),
                 "/family": ("Family pool", "Семейный счёт"),
                 "/redemption-code": ("Pay with miles at a partner",
                                      "Оплата милями у партнёра"),  # noqa: RUF001
                 "/statement": ("Statement", "Выписка"),
                 "/buy": ("Buy miles and status", "Покупка миль и статуса"),
                 "/profile": ("Profile", "Профиль")}
        for path, (english, _) in pages.items():
            await phone.goto(path)
            await expect(phone.get_by_role("heading", level=1)).to_have_text(english)
            assert await fits(phone), path
        await phone.goto("/")
        await phone.get_by_role("button", name="Русский").click()
        await expect(phone.locator("html")).to_have_attribute("lang", "ru")
        for path, (_, russian) in pages.items():
            await phone.goto(path)
            if russian is not None:
                await expect(phone.get_by_role("heading", level=1)).to_have_text(russian)
            await expect(phone.locator("html")).to_have_attribute("lang", "ru")
            assert await fits(phone), path
        await phone.goto("/gifts")
        await expect(phone.get_by_label("Номер карты получателя")).to_be_visible()
        await expect(phone.get_by_role("link", name="Семья")).to_be_visible()
        await phone.goto("/family")
        await phone.get_by_role("button", name="Открыть семейный счёт").click()
        await expect(phone.locator("#family-done")).to_contain_text("Семейный счёт открыт")
        assert await fits(phone), "/family with a pool"
        await phone.goto("/redemption-code")
        await phone.get_by_role("button", name="Получить одноразовый код").click()
        await expect(phone.locator("#code")).to_have_text(re.compile(r"^\d{8}$"))
        assert await fits(phone), "/redemption-code with a code"
    finally:
        await screenshot_if_failed(request, phone)
        await phone.context.close()
