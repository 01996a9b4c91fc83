"""A small self-service page for the browser tests, served over HTTPS on localhost, that
relays to mfad's gRPC API the way a portal would.

The page's script calls ``navigator.credentials.create/get`` with the options mfad
returned (``PublicKeyCredential.parseCreationOptionsFromJSON`` /
``parseRequestOptionsFromJSON``) and posts ``credential.toJSON()`` back; the server half
(asyncio, in the test's event loop) turns each POST into one or two gRPC calls with a
portal caller token. HTTPS — with a certificate the test makes, accepted by the browser
context — because browsers take the U2F ``appid`` extension only on https pages; the
DevTools virtual authenticator lifts WebAuthn's certificate check.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mfad_client import ClientError, Method, MfadClient

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>mfad passkeys</title></head>
<body><h1>Security information</h1><pre id="log"></pre>
<script>
async function post(path, body) {
  const r = await fetch(path, {method: "POST", headers: {"content-type": "application/json"},
                               body: JSON.stringify(body)});
  const answer = await r.json();
  if (!r.ok) throw new Error(answer.error);
  return answer;
}
function log(line) { document.getElementById("log").textContent += line + "\\n"; }

// Bind a passkey: with the enrolment session of a first sign-in, or a full session.
async function registerPasskey(session, name, tamper) {
  const begun = await post("/api/passkey/begin", {session, name});
  const json = JSON.parse(begun.options);
  if (tamper) Object.assign(json.authenticatorSelection, tamper);
  const credential = await navigator.credentials.create(
      {publicKey: PublicKeyCredential.parseCreationOptionsFromJSON(json)});
  log("created " + credential.id);
  return await post("/api/passkey/finish", {session, registration_id: begun.registration_id,
                                            credential: JSON.stringify(credential.toJSON())});
}

// Re-register a U2F key as a passkey.
async function upgradeU2f(session, deviceId, tamper) {
  const begun = await post("/api/u2f/upgrade/begin", {session, device_id: deviceId});
  const json = JSON.parse(begun.options);
  if (tamper) Object.assign(json.authenticatorSelection, tamper);
  json.timeout = 5000;
  let credential;
  try {
    credential = await navigator.credentials.create(
        {publicKey: PublicKeyCredential.parseCreationOptionsFromJSON(json)});
  } catch (e) {
    return {browser_error: e.name};
  }
  return await post("/api/u2f/upgrade/finish", {session, registration_id: begun.registration_id,
                                                credential: JSON.stringify(credential.toJSON())});
}

// Sign in: username and password (or neither: usernameless), then the chosen method.
async function signIn(username, password, method, extra) {
  const begun = await post("/api/signin/begin", {username, password, method});
  if (begun.outcome !== "second_factor_required") return begun;
  const json = JSON.parse(begun.options);
  if (extra) Object.assign(json, extra);
  const credential = await navigator.credentials.get(
      {publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(json)});
  const result = await post("/api/signin/finish", {challenge_id: begun.challenge_id, method,
                                                    assertion: JSON.stringify(credential.toJSON())});
  result.extensions = credential.getClientExtensionResults();
  result.methods = begun.methods;
  return result;
}
</script></body></html>
"""

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


def self_signed(directory: Path) -> ssl.SSLContext:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .sign(key, hashes.SHA256()))
    (directory / "page.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "page.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                           serialization.PrivateFormat.PKCS8,
                                                           serialization.NoEncryption()))
    (directory / "page.key").chmod(0o600)  # mfad refuses a private key every user may read
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(directory / "page.crt", directory / "page.key")
    return context


class PortalPage:
    """The page server. ``client`` (a portal-role MfadClient) is set once mfad runs."""

    def __init__(self) -> None:
        self.client: MfadClient | None = None
        self.port = 0
        self._server: asyncio.Server | None = None
        self._routes: dict[str, Handler] = {
            "/api/passkey/begin": self._passkey_begin, "/api/passkey/finish": self._passkey_finish,
            "/api/u2f/upgrade/begin": self._upgrade_begin, "/api/u2f/upgrade/finish": self._upgrade_finish,
            "/api/signin/begin": self._signin_begin, "/api/signin/finish": self._signin_finish,
        }

    @property
    def origin(self) -> str:
        return f"https://localhost:{self.port}"

    async def start(self, tls: ssl.SSLContext) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=tls)
        self.port = self._server.sockets[0].getsockname()[1]

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    # --- a minimal HTTP/1.1 server: one request per connection --------------------------------
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(30):
                request_line = (await reader.readline()).decode("latin-1").split()
                headers = {}
                while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    name, _, value = line.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                status, ctype, payload = await self._respond(request_line, body)
                writer.write(f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(payload)}\r\n"
                             "Connection: close\r\nCache-Control: no-store\r\n\r\n".encode() + payload)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError, TimeoutError):
            pass
        finally:
            writer.close()

    async def _respond(self, request_line: list[str], body: bytes) -> tuple[str, str, bytes]:
        if len(request_line) < 2:
            return "400 Bad Request", "text/plain", b"bad request"
        method, path = request_line[0], request_line[1]
        if method == "GET" and path == "/":
            return "200 OK", "text/html; charset=utf-8", PAGE.encode()
        handler = self._routes.get(path)
        if method != "POST" or handler is None:
            return "404 Not Found", "text/plain", b"not found"
        try:
            answer = await handler(json.loads(body))
            return "200 OK", "application/json", json.dumps(answer).encode()
        except ClientError as exc:
            return "400 Bad Request", "application/json", json.dumps({"error": str(exc)}).encode()

    # --- relays to mfad -----------------------------------------------------------------------
    @property
    def _mfad(self) -> MfadClient:
        assert self.client is not None
        return self.client

    async def _passkey_begin(self, q: dict[str, Any]) -> dict[str, Any]:
        reg = await self._mfad.enrollment.begin_passkey_binding(q["session"], q["name"])
        return {"registration_id": reg.registration_id, "options": reg.creation_options_json}

    async def _passkey_finish(self, q: dict[str, Any]) -> dict[str, Any]:
        device, _ = await self._mfad.enrollment.complete_passkey_binding(q["session"], q["registration_id"],
                                                                         q["credential"])
        return {"device_id": device.id, "method": device.method}

    async def _upgrade_begin(self, q: dict[str, Any]) -> dict[str, Any]:
        reg = await self._mfad.enrollment.begin_u2f_upgrade(q["session"], q["device_id"])
        return {"registration_id": reg.registration_id, "options": reg.creation_options_json}

    async def _upgrade_finish(self, q: dict[str, Any]) -> dict[str, Any]:
        device, retired, _ = await self._mfad.enrollment.complete_u2f_upgrade(q["session"], q["registration_id"],
                                                                              q["credential"])
        return {"device_id": device.id, "method": device.method, "retired": retired}

    async def _signin_begin(self, q: dict[str, Any]) -> dict[str, Any]:
        begun = await self._mfad.auth.begin_sign_in(q["username"], q["password"])
        out: dict[str, Any] = {"outcome": begun.outcome.value, "methods": [m.value for m in begun.methods]}
        if begun.session is not None:
            out["session"] = begun.session.token
        if begun.challenge_id:
            out["challenge_id"] = begun.challenge_id
            details = await self._mfad.auth.start_challenge(begun.challenge_id, Method(q["method"]))
            out["options"] = details.request_options_json
        return out

    async def _signin_finish(self, q: dict[str, Any]) -> dict[str, Any]:
        done = await self._mfad.auth.complete_challenge(q["challenge_id"], Method(q["method"]),
                                                        assertion_json=q["assertion"])
        return {"outcome": done.outcome.value, "username": done.username,
                "session": done.session.token if done.session else None}
