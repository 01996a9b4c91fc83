"""Every console form as a hostile or clumsy client would send it (httpx against a real ``mfad
serve``, both store engines): without or with a wrong CSRF token (403), from a role that may not
(helpdesk, auditor: 403), and with bad input — over-long, not UTF-8, empty required fields, an
unknown user. Each time the answer says what is wrong, and the store is exactly as before
(users, devices, lock-outs, remembered devices, policy, caller tokens, and no audit row of a
change); on a form page, what was typed (but never a password) is still in the form."""

from __future__ import annotations

import re
from typing import Any

import pytest
from portal_support import PASSWORD, OathApp, Site, StartSite, mfad_daemon, site  # noqa: F401
from test_portal_http import Visitor, error_of

from mfad_client import ClientError, Role, StaffRole

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("engine", ["sqlite", "postgres"])]

CHANGES = ("user_created", "user_disabled", "user_enabled", "password_set", "device_unbound", "lockout_reset",
           "remembered_revoked", "policy_changed", "caller_token_created", "caller_token_revoked", "role_set",
           "enrolment_code")
POLICY_FORM = {"mfa_required": "off", "remember_days": "9", "sensitive_reauth_seconds": "300", "method_totp": "on",
               "enrolment_proof": "access_code"}


async def staff(s: Site, username: str, role: StaffRole | None) -> Visitor:
    """A console user signed in through the portal's pages with password and authenticator app."""
    app = await s.user_with_app(username)
    await s.admin.admin.set_role(username, role)
    return await signed_in(s, username, app)


async def signed_in(s: Site, username: str, app: OathApp, *, remember: bool = False) -> Visitor:
    v = Visitor(s)
    assert (await v.sign_in(username, PASSWORD)).headers["location"] == "/signin/verify"
    await v.get("/signin/verify")
    done = await v.post("/signin/verify/code", {"method": "totp", "code": await app.next_code(),
                                                **({"remember": "1"} if remember else {})})
    assert done.headers["location"] == "/security", done.text
    await v.get("/security")  # the signed-in session's CSRF token
    return v


async def state(s: Site) -> dict[str, Any]:
    """What the console's forms could change, read with mfad's own admin token."""
    a = s.admin.admin
    users = []
    token = ""
    while True:
        found = await a.list_users(page_size=100, page_token=token)
        users += found.users
        token = found.next_page_token
        if not token:
            break
    out: dict[str, Any] = {"policy": await a.get_policy(),
                           "tokens": [(c.name, c.role, c.revoked) for c in await a.list_caller_tokens(
                               include_revoked=True)]}
    for u in users:
        details = await a.get_user(u.username)
        out[u.username] = (u.disabled, u.has_password, u.role, details.devices.devices,
                           details.lockout.consecutive_failures, details.lockout.locked,
                           len(await a.list_remembered(u.username)))
    changes = 0
    for event in CHANGES:
        changes += len((await a.query_audit(event=event, page_size=500)).events)
    out["changes in the audit log"] = changes
    return out


async def people(s: Site) -> dict[str, str]:
    """lee (an app and a remembered device, a failure on the counter), dis (disabled); the
    ids to name in the forms."""
    app = await s.user_with_app("lee")
    await s.admin.admin.create_user("dis", PASSWORD)
    await s.admin.admin.disable_user("dis", "left")
    lee = await signed_in(s, "lee", app, remember=True)  # the policy allows it in these tests
    await lee.close()
    assert len(await s.admin.admin.list_remembered("lee")) == 1
    await s.admin.admin.create_caller_token("ci", Role.SERVICE)
    [device] = (await s.admin.admin.list_devices("lee")).devices
    return {"device": device.id}


def forms(ids: dict[str, str]) -> list[tuple[str, dict[str, str]]]:
    """Every console form, filled in as a person with the right role would."""
    return [("/admin/users", {"username": "erin", "kind": "local", "password": PASSWORD}),
            ("/admin/user/disable", {"username": "lee", "reason": "left"}),
            ("/admin/user/enable", {"username": "dis"}),
            ("/admin/user/password", {"username": "lee", "password": PASSWORD + "2", "confirm": PASSWORD + "2"}),
            ("/admin/user/unbind", {"username": "lee", "device_id": ids["device"], "reason": "phone lost"}),
            ("/admin/user/lockout", {"username": "lee"}),
            ("/admin/user/remembered", {"username": "lee", "id": ""}),
            ("/admin/user/enrolment-code", {"username": "dis", "hours": "24"}),
            ("/admin/policy", POLICY_FORM),
            ("/admin/policy/save", {}),
            ("/admin/tokens", {"name": "new-one", "role": "service", "days": ""}),
            ("/admin/tokens/revoke", {"name": "ci"})]


async def test_every_console_form_refuses_a_missing_or_wrong_csrf_token_and_changes_nothing(
        site: StartSite) -> None:
    s = await site(policy={"remember_device": True})
    ids = await people(s)
    admin = await staff(s, "root", StaffRole.ADMIN)
    # The policy change waits in the session after its review: the save form below has something to save.
    assert (await admin.post("/admin/policy", POLICY_FORM)).status_code == 200
    before = await state(s)
    for path, form in forms(ids):
        missing = await admin.post(path, form, csrf=False)
        wrong = await admin.post(path, {**form, "csrf": admin.csrf[:-2] + "xx"}, csrf=False)
        foreign = await admin.http.post(path, data={**form, "csrf": admin.csrf},
                                        headers={"origin": "https://evil.example"})
        for answer in (missing, wrong, foreign):
            assert answer.status_code == 403, (path, answer.status_code)
            assert "This form has expired" in answer.text, path
    assert await state(s) == before
    await admin.close()


async def test_helpdesk_and_auditor_are_refused_where_their_role_ends_and_nothing_changes(site: StartSite) -> None:
    s = await site(policy={"remember_device": True})
    ids = await people(s)
    helpdesk = await staff(s, "hana", StaffRole.HELPDESK)
    auditor = await staff(s, "aldo", StaffRole.AUDITOR)
    plain = await staff(s, "paul", None)
    before = await state(s)
    allowed_to_helpdesk = {"/admin/user/unbind", "/admin/user/lockout", "/admin/user/remembered",
                           "/admin/user/enrolment-code"}
    for path, form in forms(ids):
        for who, visitor in (("helpdesk", helpdesk), ("auditor", auditor), ("no role", plain)):
            if who == "helpdesk" and path in allowed_to_helpdesk:
                continue
            answer = await visitor.post(path, form)
            # The policy's save has nothing waiting for it (400): the review before it was refused.
            expected = (400, 403) if path == "/admin/policy/save" else (403,)
            assert answer.status_code in expected, (who, path, answer.status_code)
            if answer.status_code == 403:
                assert "Your console role does not allow this." in answer.text or \
                       "Your administrator does not allow this." in answer.text, (who, path)
    for who, visitor in (("helpdesk", helpdesk), ("auditor", auditor), ("no role", plain)):
        for page in ("/admin/policy", "/admin/tokens") if who == "helpdesk" else ("/admin/users",) \
                if who == "no role" else ():
            assert (await visitor.get(page)).status_code == 403, (who, page)
    after = await state(s)
    assert after == before
    denied = (await s.admin.admin.query_audit(event="console_denied", page_size=500)).events
    assert {e.username for e in denied} == {"hana", "aldo", "paul"}
    for v in (helpdesk, auditor, plain):
        await v.close()


async def test_bad_input_on_every_console_form_is_answered_clearly_and_changes_nothing(site: StartSite) -> None:
    s = await site(policy={"remember_device": True})
    ids = await people(s)
    admin = await staff(s, "root", StaffRole.ADMIN)
    before = await state(s)
    long = "x" * 5000

    def raw(path: str, body: bytes) -> Any:
        return admin.http.post(path, content=b"csrf=" + admin.csrf.encode() + b"&" + body,
                               headers={"content-type": "application/x-www-form-urlencoded"})

    # Over-long and not UTF-8: refused before anything reaches mfad, on every form.
    for path, form in forms(ids):
        for name in [k for k in form if k != "csrf"] or ["username"]:
            for answer in (await admin.post(path, {**form, name: long}),
                           await raw(path, name.encode() + b"=%FF%FEab")):
                assert answer.status_code == 400, (path, name)
                assert "Check what you entered and try again." in answer.text, (path, name)
                assert "Traceback" not in answer.text

    # Empty required fields: the page again, saying which, with what was typed kept.
    empty = {
        ("/admin/users", "username", ""): "Enter a username and choose how the user signs in.",
        ("/admin/users", "password", ""): "A local user needs a password.",
        ("/admin/user/password", "password", ""): "Enter the new password.",
        ("/admin/user/unbind", "reason", "  "): "Say why the device is unbound (for the audit log).",
        ("/admin/tokens", "name", " "): "Enter a name and choose a role.",
        ("/admin/tokens/revoke", "name", ""): "Choose a token to revoke.",
        ("/admin/user/enrolment-code", "hours", "0"): "Enter how many hours the code is valid: 1 to 720.",
        ("/admin/user/enrolment-code", "hours", "721"): "Enter how many hours the code is valid: 1 to 720.",
        ("/admin/user/enrolment-code", "hours", "a day"): "Enter how many hours the code is valid: 1 to 720.",
        ("/admin/policy", "enrolment_proof", "password"):
            "Choose none, access_code or email_code for the enrolment proof.",
    }
    for (path, name, value), words in empty.items():
        form = dict(forms(ids))[path]
        answer = await admin.post(path, {**form, name: value})
        assert answer.status_code == 400 and error_of(answer) == words, (path, name, error_of(answer))
    kept = await admin.post("/admin/users", {"username": "erin", "kind": "local", "password": ""})
    assert 'value="erin"' in kept.text  # the name typed, not lost
    kept = await admin.post("/admin/tokens", {"name": "deploy-bot", "role": "root", "days": "30"})
    assert error_of(kept) == "Enter a name and choose a role." and 'value="deploy-bot"' in kept.text
    assert 'value="30"' in kept.text
    kept = await admin.post("/admin/policy", {**POLICY_FORM, "remember_days": "0"})
    assert error_of(kept) == "Enter whole numbers in the ranges shown."
    assert 'name="remember_days" value="0"' in kept.text  # the figure typed, to correct
    assert re.search(r'<option value="off" selected>', kept.text)
    mismatch = await admin.post("/admin/user/password", {"username": "lee", "password": "one-password-1",
                                                         "confirm": "two-password-2"})
    assert error_of(mismatch) == "The two passwords are not the same." and "one-password-1" not in mismatch.text

    # A username mfad will not take (too long for it, or spaces): its words, the page kept.
    for name in ("a" * 300, "has space", "\u200bzero-width"):
        answer = await admin.post("/admin/users", {"username": name, "kind": "local", "password": PASSWORD})
        assert answer.status_code == 400, name
        assert error_of(answer) == "That username cannot be used: it starts with a letter or a digit, then has " \
                                   "only letters, digits and . _ - @ +, at most 64 characters.", name
        assert f'value="{name}"' in answer.text

    # An unknown user, on every form that names one, and the user's own page.
    for path, form in forms(ids):
        if "username" not in form or path == "/admin/users":
            continue
        answer = await admin.post(path, {**form, "username": "nobody"})
        assert answer.status_code == 404, (path, answer.status_code)
        # Unbinding names a device too: mfad's NOT_FOUND may be either, and the words say so.
        words = "That item no longer exists." if path == "/admin/user/unbind" else \
            "There is no such user. Check the name and search again."
        assert words in answer.text, path
    page = await admin.get("/admin/user?name=nobody")
    assert page.status_code == 404 and "There is no such user." in page.text
    unknown_device = await admin.post("/admin/user/unbind", {"username": "lee", "device_id": "999999",
                                                             "reason": "lost"})
    assert unknown_device.status_code == 404, unknown_device.status_code
    unknown_token = await admin.post("/admin/tokens/revoke", {"name": "no-such-token"})
    assert unknown_token.status_code == 404 and "There is no caller token of that name." in unknown_token.text

    # The audit filters (a GET form): bad times, over-long and not UTF-8 values.
    for query in ("since=yesterday", "until=2026-13-01", "user=" + "x" * 5000, "user=%FF%FE", "event=%C0%AF"):
        answer = await admin.http.get("/admin/audit?" + query)
        assert answer.status_code == 400, (query, answer.status_code)
        assert error_of(answer), query
        csv = await admin.http.get("/admin/audit.csv?" + query)
        assert csv.status_code == 400 and "text/csv" not in csv.headers["content-type"], query

    assert await state(s) == before
    await admin.close()
