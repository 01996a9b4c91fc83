"""The portal over plain HTTP, as a hostile client would use it (httpx against a real ``mfad serve``):
security headers and cookies, CSRF (token and Origin), identical refusals, bad input (over-long,
non-UTF-8, control characters, too large, forged cookies, replayed forms, a WebAuthn response
made for another user's ceremony), health, readiness and metrics."""

from __future__ import annotations

import asyncio
import re
import urllib.request
from typing import Any

import httpx
import pytest
from portal_support import PASSWORD, OathApp, Site, StartSite, mfad_daemon, site  # noqa: F401
from softauthn import SoftAuthenticator

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("engine", ["sqlite"])]

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


class Visitor:
    """One browser-less visitor: its own cookies, the portal's Origin on every request."""

    def __init__(self, s: Site, *, origin: str | None = None, forwarded_for: str = "") -> None:
        headers = {"origin": origin or s.url}
        if forwarded_for:
            headers["x-forwarded-for"] = forwarded_for
        self.http = httpx.AsyncClient(base_url=s.url, headers=headers, follow_redirects=False, timeout=15)
        self.csrf = ""

    async def get(self, path: str) -> httpx.Response:
        answer = await self.http.get(path)
        found = CSRF.search(answer.text)
        if found:
            self.csrf = found.group(1)
        return answer

    async def post(self, path: str, data: dict[str, str] | None = None, *, csrf: bool = True,
                   **kwargs: Any) -> httpx.Response:
        form = dict(data or {})
        if csrf:
            form["csrf"] = self.csrf
        return await self.http.post(path, data=form, **kwargs)

    async def post_json(self, path: str, body: dict[str, Any]) -> httpx.Response:
        return await self.http.post(path, json=body, headers={"x-csrf-token": self.csrf})

    async def sign_in(self, username: str, password: str, **kwargs: Any) -> httpx.Response:
        await self.get("/signin")
        return await self.post("/signin", {"username": username, "password": password}, **kwargs)

    async def close(self) -> None:
        await self.http.aclose()


def error_of(answer: httpx.Response) -> str:
    found = re.search(r'role="alert" aria-live="assertive">([^<]*)<', answer.text)
    return found.group(1) if found else ""


async def test_headers_cookies_csrf_health_and_metrics(site: StartSite) -> None:
    s = await site()
    v = Visitor(s)
    page = await v.get("/signin")
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert page.headers["referrer-policy"] == "same-origin" and page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["cache-control"] == "no-store" and "strict-transport-security" not in page.headers
    cookie = page.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" not in cookie  # http://localhost
    assert "<script>" not in page.text and "<script src=\"/static/webauthn.js\"" in page.text
    assert (await v.http.get("/static/webauthn.js")).status_code == 200

    await s.admin.admin.create_user("alice", PASSWORD)
    before = await s.mfad.counts()
    for forged in ({"csrf": False}, {"headers": {"origin": "https://evil.example"}},
                   {"headers": {"origin": ""}}):
        answer = await v.post("/signin", {"username": "alice", "password": PASSWORD}, **forged)
        assert answer.status_code == 403, forged
        assert "This form has expired" in answer.text
    cookieless = httpx.AsyncClient(base_url=s.url, headers={"origin": s.url})
    answer = await cookieless.post("/signin", data={"username": "alice", "password": PASSWORD, "csrf": v.csrf})
    assert answer.status_code == 403
    await cookieless.aclose()
    assert await s.mfad.counts() == before  # nothing reached mfad: no session, no audit row

    assert (await v.http.get("/healthz")).text == "ok\n"
    assert (await v.http.get("/readyz")).status_code == 200
    assert (await v.http.get("/nope")).status_code == 404
    with urllib.request.urlopen(f"http://127.0.0.1:{s.mfad.daemon.metrics_port}/metrics", timeout=5) as reply:
        metrics = reply.read().decode()
    assert 'mfad_portal_requests_total{route="sign_in",status="403"} 4.0' in metrics
    assert 'mfad_portal_request_duration_seconds_count{route="sign_in"}' in metrics
    await v.close()


async def test_every_refusal_reads_the_same(site: StartSite) -> None:
    s = await site(trusted_proxies=["127.0.0.1"])
    await s.user_with_app("alice")
    await s.admin.admin.create_user("locky", PASSWORD)
    for n in range(10):  # from ten addresses (the proxy says so): a lock-out, not a source back-off
        locking = Visitor(s, forwarded_for=f"192.0.2.{n + 10}")
        await locking.sign_in("locky", "wrong")
        await locking.close()
    assert (await s.admin.admin.get_lockout("locky")).locked

    v = Visitor(s, forwarded_for="198.51.100.7")
    answers = {}
    for case, (username, password) in {"unknown user": ("nobody", PASSWORD), "wrong password": ("alice", "nope"),
                                       "locked": ("locky", PASSWORD), "empty": ("alice", "")}.items():
        answer = await v.sign_in(username, password)
        answers[case] = (answer.status_code, error_of(answer), answer.text.replace(f'value="{username}"', ""))
    assert len(set(answers.values())) == 1, answers
    assert answers["locked"][1].startswith("The sign-in did not succeed.")
    events = await s.admin.admin.query_audit(username="locky", outcome="refused")
    assert events.events and events.events[0].source == "198.51.100.7"  # the user's address, from the proxy
    await v.close()


async def test_bad_input_gets_a_clear_answer_and_changes_nothing(site: StartSite) -> None:
    s = await site()
    app = await s.user_with_app("alice")
    v = Visitor(s)
    await v.get("/signin")
    before = await s.mfad.counts()
    cases = {
        "over-long": await v.post("/signin", {"username": "a" * 5000, "password": PASSWORD}),
        "control character": await v.post("/signin", {"username": "ali\x00ce", "password": PASSWORD}),
        "not UTF-8": await v.http.post("/signin", content=f"csrf={v.csrf}&username=%FF%FE&password=x".encode(),
                                       headers={"content-type": "application/x-www-form-urlencoded"}),
        "too large": await v.http.post("/signin", content=b"x" * 70_000,
                                       headers={"content-type": "application/x-www-form-urlencoded"}),
    }
    for name, answer in cases.items():
        assert answer.status_code in (400, 413), name
        assert "Traceback" not in answer.text and "Check what you entered" in answer.text, name
    assert await s.mfad.counts() == before
    json_garbage = await v.http.post("/signin/verify/passkey/options", content=b"{not json",
                                     headers={"content-type": "application/json", "x-csrf-token": v.csrf})
    assert json_garbage.status_code == 400 and "error" in json_garbage.json()

    forged = httpx.AsyncClient(base_url=s.url, headers={"origin": s.url},
                               cookies={"mfad_session": "forged-session-id"})
    assert (await forged.get("/security")).headers["location"] == "/signin"
    assert (await forged.post("/security/remembered/revoke-all", data={"csrf": v.csrf})).status_code == 403
    await forged.aclose()

    # A replayed form: the second-factor POST sent again after it signed the user in.
    answer = await v.sign_in("alice", PASSWORD)
    assert answer.headers["location"] == "/signin/verify"
    form = {"csrf": v.csrf, "method": "totp", "code": await app.next_code()}
    old_cookies = dict(v.http.cookies)
    done = await v.http.post("/signin/verify/code", data=form)
    assert done.headers["location"] == "/security"
    before = await s.mfad.counts()
    async with httpx.AsyncClient(base_url=s.url, headers={"origin": s.url}, cookies=old_cookies) as replaying:
        replayed = await replaying.post("/signin/verify/code", data=form)
    assert replayed.status_code == 403  # the sign-in gave the session a new id: the old one is gone
    assert await s.mfad.counts() == before
    await v.close()


async def test_a_webauthn_response_for_another_users_ceremony_is_refused(site: StartSite) -> None:
    s = await site()
    visitors = {}
    options = {}
    for name in ("dave", "erin"):
        await s.admin.admin.create_user(name, PASSWORD)
        v = Visitor(s)
        assert (await v.sign_in(name, PASSWORD)).headers["location"] == "/signin/bind"
        await v.get("/signin/bind")
        answer = await v.post_json("/signin/bind/passkey/options", {"name": "laptop"})
        assert answer.status_code == 200
        visitors[name], options[name] = v, answer.json()["options"]
    erins = SoftAuthenticator().create(options["erin"], s.url)
    before = await s.mfad.counts()
    answer = await visitors["dave"].post_json("/signin/bind/passkey", {"credential": erins})
    assert answer.status_code == 400
    assert answer.json() == {"error": "The passkey was not created. Try again, or use another method."}
    for name in ("dave", "erin"):
        assert (await s.admin.admin.list_devices(name)).devices == ()
    after = await s.mfad.counts()
    assert after["devices"] == before["devices"]
    # The ceremony is used up: the right response, sent now, is refused too (single use).
    mine = SoftAuthenticator().create(options["dave"], s.url)
    again = await visitors["dave"].post_json("/signin/bind/passkey", {"credential": mine})
    assert again.status_code == 400, again.text
    await asyncio.gather(*(v.close() for v in visitors.values()))


async def test_behind_a_proxy_pages_are_served_only_when_it_says_it_terminated_tls(site: StartSite) -> None:
    s = await site(public_url="https://localhost", trusted_proxies=["127.0.0.1"])
    direct = f"http://127.0.0.1:{s.url.rpartition(':')[2]}"
    async with httpx.AsyncClient(base_url=direct) as http:
        plain = await http.get("/signin")
        assert plain.status_code == 400 and "served over https only" in plain.text
        proxied = await http.get("/signin", headers={"x-forwarded-proto": "https"})
        assert proxied.status_code == 200
        assert "Secure" in proxied.headers["set-cookie"] and "__Host-mfad_session" in proxied.headers["set-cookie"]
        assert proxied.headers["strict-transport-security"] == "max-age=31536000"
        assert (await http.get("/healthz")).status_code == 200  # probes need no proxy
