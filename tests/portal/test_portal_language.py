"""The portal in Simplified Chinese (chosen from Accept-Language) and with ``self_service = false``
(read-only, "your administrator manages them"), in a real browser at phone width; the catalogs
cover every text the templates and the code show."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from babel.messages.pofile import read_po
from playwright.async_api import Browser, expect
from portal_support import PASSWORD, PHONE, StartSite, chromium, mfad_daemon, site  # noqa: F401

from mfad_portal import i18n

PORTAL = Path(i18n.__file__).parent


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["sqlite"])
async def test_chinese_pages_and_a_read_only_security_page(site: StartSite, chromium: Browser) -> None:
    s = await site(policy={"self_service": False})
    app = await s.user_with_app("li")
    tab = await s.browser(chromium, locale="zh-CN", viewport=PHONE)
    page = tab.page

    await tab.open("/signin")
    assert await page.get_attribute("html", "lang") == "zh-Hans"
    assert await tab.heading() == "登录"
    await tab.shot("signin-zh-phone")
    await page.get_by_label("用户名").fill("li")
    await page.get_by_label("密码").fill("wrong")
    await page.get_by_role("button", name="登录", exact=True).click()
    await expect(page.get_by_role("alert")).to_have_text("登录未成功。请检查用户名、密码和验证码，然后重试。")
    await page.get_by_label("密码").fill(PASSWORD)
    await page.get_by_role("button", name="登录", exact=True).click()
    assert await tab.heading() == "验证您的身份"
    assert await page.get_by_role("checkbox").count() == 0  # the policy does not allow remembering devices
    await page.get_by_label("验证码").fill(await app.next_code())
    await page.get_by_role("button", name="验证").click()

    assert await tab.heading() == "安全信息"
    await expect(page.get_by_text("您的 MFA 设备由管理员管理")).to_be_visible()
    await expect(page.get_by_text("authenticator app · 绑定于")).to_be_visible()  # the device is listed...
    for button in ("移除", "创建通行密钥", "绑定虚拟 MFA 设备", "发送验证码"):  # ...and nothing can be changed
        assert await page.get_by_role("button", name=button).count() == 0, button
    await tab.shot("security-read-only-zh-phone")

    session = await tab.cookie("mfad_session")
    assert session is not None
    async with httpx.AsyncClient(cookies={"mfad_session": session["value"]}) as same_session:  # in English
        english = await same_session.get(s.url + "/security", headers={"accept-language": "en-GB,en;q=0.9"})
    assert '<html lang="en"' in english.text and "Your administrator manages your MFA devices." in english.text


def test_every_text_has_a_chinese_translation(tmp_path: Path) -> None:
    pot = tmp_path / "messages.pot"
    subprocess.run([str(Path(sys.executable).parent / "pybabel"), "extract", "-F",
                    str(PORTAL / "babel.cfg"), "-k", "N_", "--no-location", "-o", str(pot), str(PORTAL)],
                   check=True, capture_output=True, timeout=120)
    with pot.open("rb") as f:
        wanted = {m.id for m in read_po(f) if m.id}
    with (PORTAL / "locale" / "zh_Hans" / "LC_MESSAGES" / "messages.po").open("rb") as f:
        have = {m.id: m.string for m in read_po(f) if m.id}
    missing = [w for w in wanted if not have.get(w)]
    assert len(wanted) > 100 and not missing, f"add to the zh_Hans catalog: {missing}"
    unused = [h for h in have if h not in wanted]
    assert not unused, f"no longer used, remove: {unused}"


def test_accept_language_picks_the_language() -> None:
    assert i18n.negotiate("zh-CN,zh;q=0.9,en;q=0.8") == "zh-Hans"
    assert i18n.negotiate("en-GB,zh;q=0.5") == "en"
    assert i18n.negotiate("fr-FR, zh-Hans;q=0.3") == "zh-Hans"
    assert i18n.negotiate("fr, de") == "en" and i18n.negotiate("") == "en"
    assert i18n.negotiate("zh;q=0, en;q=0.1") == "en"
