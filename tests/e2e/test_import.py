"""Importing TOTP secrets and users from other systems, into a running daemon (``mfactl
import``) and into its store offline (``mfad import``), over both engines. The files are
made by the real tools (``google-authenticator`` from libpam-google-authenticator) or
written as those systems write them, and every imported device is proven with a code
from ``oathtool``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from pathlib import Path

from e2e_daemon import Running, StartDaemon, mfad_daemon  # noqa: F401
from e2e_support import run

from mfad_client import SignInOutcome

TOOLS_PATH = {"PATH": "/usr/bin:/bin"}


async def google_authenticator(home: Path, *extra: str, counter: bool = False) -> str:
    """A fresh ~/.google_authenticator in ``home``, made by the tool; returns its secret."""
    home.mkdir(parents=True)
    path = home / ".google_authenticator"
    mode = ["-c"] if counter else ["-t", "-d"]
    made = await run(["google-authenticator", *mode, "-f", "-r", "3", "-R", "30", "-w", "3", "-Q", "NONE", "-q",
                      "-s", str(path), *extra], env={**TOOLS_PATH, "HOME": str(home)})
    assert made.code == 0, made
    return path.read_text().splitlines()[0]


async def oathtool(secret: str, *, period: int = 30, digits: int = 6, algorithm: str = "sha1") -> str:
    done = await run(["oathtool", f"--totp={algorithm}", "-s", f"{period}s", "-d", str(digits), "-b", secret],
                     env=TOOLS_PATH)
    assert done.code == 0, done
    return done.out.strip()


async def accepted(mfad: Running, username: str, code: str) -> bool:
    done = await mfad.mfactl("verify", username, code)
    return (done.code, done.out.strip()) == (0, "accepted")


async def stored_devices(mfad: Running) -> str:
    async with mfad.store.read() as tx:  # type: ignore[attr-defined]
        return repr([tuple(r) for r in await tx.fetch("SELECT * FROM devices")])


async def test_google_authenticator_files_import_offline_and_their_codes_are_accepted(
        mfad_daemon: StartDaemon) -> None:
    mfad = await mfad_daemon()
    home = mfad.workdir / "home"
    alice = await google_authenticator(home / "alice")
    bob = await google_authenticator(home / "bob", "-S", "60")
    files = [str(home / name / ".google_authenticator") for name in ("alice", "bob")]

    refused = await mfad.mfad("import", "google-authenticator", *files)
    assert refused.code == 1 and "alice: no such user (add --create-users)" in refused.out, refused
    done = await mfad.mfad("import", "google-authenticator", "--create-users", *files)
    assert done.code == 0 and "2 user(s) created, 2 TOTP device(s) imported" in done.out, done
    assert await accepted(mfad, "alice", await oathtool(alice))
    assert await accepted(mfad, "bob", await oathtool(bob, period=60))

    stored = await stored_devices(mfad)  # sealed like generated secrets: neither form is in the database
    for secret in (alice, bob):
        raw = base64.b32decode(secret + "=" * (-len(secret) % 8))
        assert secret not in stored and raw.hex() not in stored and repr(raw) not in stored
    again = await mfad.mfad("import", "google-authenticator", files[0])
    assert again.code == 1 and "alice: the user already has a TOTP device" in again.out, again
    tail = await mfad.mfactl("--json", "audit", "tail", "--event", "device_imported")
    assert sorted((e["username"], e["actor"], e["detail"].split()[-1]) for e in tail.json()["items"]) == [
        ("alice", "cli", "from=google-authenticator"), ("bob", "cli", "from=google-authenticator")]

    await google_authenticator(home / "carol", counter=True)  # counter-based: mfad has no HOTP
    hotp = await mfad.mfad("import", "google-authenticator", "--create-users", str(home / "carol/.google_authenticator"))
    assert hotp.code == 2 and "counter-based (HOTP)" in hotp.err, hotp
    assert await mfad.daemon.stop() == 0


async def test_mfactl_imports_otpauth_uris_and_a_csv_of_users(mfad_daemon: StartDaemon) -> None:
    mfad = await mfad_daemon()
    alice, carol, dave = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP", "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ", "MFRGGZDFMZTWQ2LKNNWG23TPOBYXE43U"
    uris = mfad.workdir / "uris.txt"
    uris.write_text(f"# exported from the old VPN portal\notpauth://totp/OldVPN:alice?secret={alice}&issuer=OldVPN\n\n"
                    f"otpauth://totp/Carol%40example.com?secret={carol}&algorithm=SHA256&digits=8&period=60\n")
    missing = await mfad.mfactl("import", "otpauth", str(uris))
    assert missing.code == 1 and "no such user" in missing.out, missing
    done = await mfad.mfactl("--json", "import", "otpauth", "--create-users", str(uris))
    assert (done.code, done.json()) == (0, {"users_created": 2, "devices_imported": 2, "failed": []}), done
    assert await accepted(mfad, "alice", await oathtool(alice))
    assert await accepted(mfad, "carol@example.com", await oathtool(carol, period=60, digits=8, algorithm="sha256"))
    shown = await mfad.mfactl("--json", "device", "list", "alice")
    assert [(d["method"], d["state"], d["name"]) for d in shown.json()["items"]] == [("totp", "active", "OldVPN")]

    users = mfad.workdir / "users.csv"
    users.write_text("username,password,disabled,totp_secret\n"
                     f"Dave,a long enough passphrase,false,{dave}\n"
                     "erin,,true,\n"
                     "frank,short,false,\n")
    done = await mfad.mfactl("--json", "import", "csv", str(users))
    assert done.code == 1, done
    assert (done.json()["users_created"], done.json()["devices_imported"]) == (2, 1)
    assert done.json()["failed"] == ["frank: password: must be at least 12 characters"]
    begun = await mfad.client("portal").auth.begin_sign_in("dave", "a long enough passphrase")
    assert begun.outcome is SignInOutcome.SECOND_FACTOR_REQUIRED
    assert await accepted(mfad, "dave", await oathtool(dave))
    erin = await mfad.mfactl("--json", "user", "show", "erin")
    assert erin.json()["user"]["disabled"] is True and erin.json()["user"]["has_password"] is False
    assert (await mfad.mfactl("user", "show", "frank")).code == 1  # refused: not created
    assert await mfad.daemon.stop() == 0


async def test_a_bad_file_imports_nothing_and_names_every_problem(mfad_daemon: StartDaemon) -> None:
    mfad = await mfad_daemon()
    before = await mfad.counts()
    uris = mfad.workdir / "uris.txt"
    uris.write_text("otpauth://totp/x:ann?secret=JBSWY3DPEHPK3PXP\n"
                    "otpauth://hotp/x:bob?secret=JBSWY3DPEHPK3PXP&counter=1\n"
                    "otpauth://totp/x:cid?secret=not-base-32!\n"
                    "otpauth://totp/x:dee?secret=JBSWY3DPEHPK3PXP&algorithm=MD5\n")
    done = await mfad.mfactl("import", "otpauth", "--create-users", str(uris))
    assert done.code == 2, done
    for problem in ("uris.txt:2: otpauth://hotp: only totp is supported", "uris.txt:3: secret: not base32",
                    "uris.txt:4: algorithm 'MD5'"):
        assert problem in done.err, done
    offline = await mfad.mfad("import", "csv", str(uris))
    assert offline.code == 2 and "the header must name username" in offline.err, offline
    assert await mfad.counts() == before
    assert await mfad.daemon.stop() == 0


RFC6030 = Path(__file__).resolve().parents[1] / "data" / "rfc6030"
PRE_SHARED_KEY = bytes.fromhex("12345678901234567890123456789012")  # RFC 6030 Figure 6


def _encrypt(key: bytes, plain: bytes) -> bytes:
    from cryptography.hazmat.primitives import padding
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    iv = os.urandom(16)
    padder = padding.PKCS7(128).padder()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return iv + encryptor.update(padder.update(plain) + padder.finalize()) + encryptor.finalize()


def totp_container(secret: bytes, user_id: str) -> str:
    """An RFC 6030 pre-shared-key container (Figure 6's shape) holding one TOTP key."""
    mac_key = os.urandom(20)
    value = _encrypt(PRE_SHARED_KEY, secret)
    value_mac = hmac.new(mac_key, value, hashlib.sha1).digest()
    b64 = lambda data: base64.b64encode(data).decode()  # noqa: E731
    aes = '<xenc:EncryptionMethod Algorithm="http://www.w3.org/2001/04/xmlenc#aes128-cbc"/>'
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<KeyContainer Version="1.0" xmlns="urn:ietf:params:xml:ns:keyprov:pskc"
    xmlns:ds="http://www.w3.org/2000/09/xmldsig#" xmlns:xenc="http://www.w3.org/2001/04/xmlenc#">
  <EncryptionKey><ds:KeyName>Pre-shared-key</ds:KeyName></EncryptionKey>
  <MACMethod Algorithm="http://www.w3.org/2000/09/xmldsig#hmac-sha1">
    <MACKey>{aes}<xenc:CipherData><xenc:CipherValue>{b64(_encrypt(PRE_SHARED_KEY, mac_key))}</xenc:CipherValue>
    </xenc:CipherData></MACKey>
  </MACMethod>
  <KeyPackage>
    <Key Id="TOTP-1" Algorithm="urn:ietf:params:xml:ns:keyprov:pskc:totp">
      <Issuer>Issuer</Issuer>
      <AlgorithmParameters><ResponseFormat Length="6" Encoding="DECIMAL"/></AlgorithmParameters>
      <Data>
        <Secret>
          <EncryptedValue>{aes}<xenc:CipherData><xenc:CipherValue>{b64(value)}</xenc:CipherValue></xenc:CipherData>
          </EncryptedValue>
          <ValueMAC>{b64(value_mac)}</ValueMAC>
        </Secret>
        <TimeInterval><PlainValue>30</PlainValue></TimeInterval>
      </Data>
      <UserId>{user_id}</UserId>
    </Key>
  </KeyPackage>
</KeyContainer>
"""


async def test_pskc_with_a_pre_shared_key(mfad_daemon: StartDaemon) -> None:
    mfad = await mfad_daemon()
    key_file = mfad.workdir / "psk.hex"
    key_file.write_text(PRE_SHARED_KEY.hex() + "\n")
    key_file.chmod(0o600)
    wrong_file = mfad.workdir / "wrong.hex"
    wrong_file.write_text("00" * 16)
    wrong_file.chmod(0o600)
    figure6, figure3 = str(RFC6030 / "figure6.pskcxml"), str(RFC6030 / "figure3.pskcxml")
    before = await mfad.counts()

    # RFC 6030 Figure 6 decrypts and its MAC verifies under the RFC's key; its key is HOTP.
    done = await mfad.mfad("import", "pskc", "--create-users", "--pskc-key-file", str(key_file), figure6)
    assert done.code == 2 and "key '12345678': a counter-based (HOTP) key" in done.err, done
    wrong = await mfad.mfad("import", "pskc", "--pskc-key-file", str(wrong_file), figure6)
    assert wrong.code == 2 and ("cannot be decrypted with this key" in wrong.err
                                or "the ValueMAC does not match" in wrong.err), wrong
    keyless = await mfad.mfad("import", "pskc", figure6)
    assert keyless.code == 2 and "MACKey is encrypted: give the pre-shared key" in keyless.err, keyless
    plain = await mfad.mfad("import", "pskc", figure3)  # Figure 3: a plain-value HOTP key
    assert plain.code == 2 and "figure3.pskcxml: key '12345678': a counter-based (HOTP) key" in plain.err, plain
    key_file.chmod(0o644)
    exposed = await mfad.mfad("import", "pskc", "--pskc-key-file", str(key_file), figure6)
    assert exposed.code == 2 and "readable by group or others" in exposed.err, exposed
    key_file.chmod(0o600)
    assert await mfad.counts() == before

    secret = os.urandom(20)
    container = mfad.workdir / "totp.pskcxml"
    container.write_text(totp_container(secret, "UID=jsmith,DC=example-bank,DC=net"))
    done = await mfad.mfactl("--json", "import", "pskc", "--create-users", "--pskc-key-file", str(key_file),
                             str(container))
    assert (done.code, done.json()) == (0, {"users_created": 1, "devices_imported": 1, "failed": []}), done
    assert await accepted(mfad, "jsmith", await oathtool(base64.b32encode(secret).decode()))
    assert await mfad.daemon.stop() == 0


async def test_export_lists_metadata_only_and_its_csv_imports_again(mfad_daemon: StartDaemon) -> None:
    old = await mfad_daemon()
    secret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
    uris = old.workdir / "uris.txt"
    uris.write_text(f"otpauth://totp/VPN:alice?secret={secret}\n")
    assert (await old.mfactl("import", "otpauth", "--create-users", str(uris))).code == 0
    await old.client("ops").admin.create_user("bob")
    await old.client("ops").admin.disable_user("bob", "left")

    exported = await old.mfactl("export")
    assert exported.code == 0, exported
    users = {u["user"]["username"]: u for u in json.loads(exported.out)["users"]}
    assert [(d["method"], d["state"], d["name"]) for d in users["alice"]["devices"]] == [("totp", "active", "VPN")]
    assert users["bob"]["user"]["disabled"] is True and users["bob"]["devices"] == []
    raw = base64.b32decode(secret)
    assert secret not in exported.out and raw.hex() not in exported.out and base64.b64encode(raw).decode() not in \
        exported.out

    target = old.workdir / "users.csv"
    written = await old.mfactl("--json", "export", "--format", "csv", "--output", str(target))
    assert written.code == 0 and written.json() == {"output": str(target), "users": 2}, written
    assert oct(target.stat().st_mode & 0o777) == "0o600"
    assert target.read_text() == "username,disabled\nalice,false\nbob,true\n"

    for name in ("alice", "bob"):  # the store emptied of them (the daemon's store is this test's)
        assert (await old.mfactl("user", "delete", name, "--yes")).code == 0
    done = await old.mfactl("--json", "import", "csv", str(target))
    assert (done.code, done.json()["users_created"]) == (0, 2), done
    bob = await old.mfactl("--json", "user", "show", "bob")
    assert bob.json()["user"]["disabled"] is True
    assert await old.daemon.stop() == 0


def _comparable(export: dict[str, object]) -> list[tuple[object, ...]]:
    """An export's users and devices without what a new store gives anew (ids, times)."""
    rows = []
    for entry in export["users"]:  # type: ignore[attr-defined]
        user = entry["user"]
        devices = sorted((d["method"], d["state"], d["name"]) for d in entry["devices"])
        rows.append((user["username"], user["disabled"], tuple(devices)))
    return sorted(rows)


async def test_export_then_import_brings_back_users_states_and_devices(mfad_daemon: StartDaemon) -> None:
    """Everything an export carries, round-tripped through its files on one store: the users
    and their disabled state (``mfactl export --format csv``), the active TOTP devices with
    their names, algorithms, digits and periods (``mfad export --include-secrets``, PSKC),
    emptied out with ``user delete`` and imported again (``mfactl import csv``, then
    ``mfactl import pskc``). The metadata export is the same before and after, and the
    original apps' codes (oathtool) are accepted."""
    mfad = await mfad_daemon()
    alice, bob = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP", "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
    uris = mfad.workdir / "uris.txt"
    uris.write_text(f"otpauth://totp/Tokens:alice?secret={alice}&issuer=Tokens&algorithm=SHA256&digits=8&period=60\n"
                    f"otpauth://totp/Phone:bob?secret={bob}&issuer=Phone\n")
    assert (await mfad.mfactl("import", "otpauth", "--create-users", str(uris))).code == 0
    admin = mfad.client("ops").admin
    await admin.create_user("carol")  # no device
    await admin.create_user("dave")
    assert (await mfad.mfactl("totp", "bind", "dave")).code == 0  # pending: not exported, not brought back
    await admin.disable_user("bob", "on leave")

    before = await mfad.mfactl("export")
    assert before.code == 0, before
    csv_file, pskc_file, psk = (mfad.workdir / name for name in ("users.csv", "devices.pskc", "export.key"))
    assert (await mfad.mfactl("export", "--format", "csv", "--output", str(csv_file))).code == 0
    psk.write_text(os.urandom(16).hex() + "\n")
    psk.chmod(0o600)
    secrets_out = await mfad.mfad("export", "--include-secrets", "--pskc-key-file", str(psk), "-o", str(pskc_file))
    assert secrets_out.code == 0 and "exported 2 TOTP secret(s)" in secrets_out.out, secrets_out
    assert alice not in pskc_file.read_text() and bob not in pskc_file.read_text()

    for name in ("alice", "bob", "carol", "dave"):
        assert (await mfad.mfactl("user", "delete", name, "--yes")).code == 0
    assert json.loads((await mfad.mfactl("export")).out)["users"] == []
    done = await mfad.mfactl("--json", "import", "csv", str(csv_file))
    assert (done.code, done.json()["users_created"]) == (0, 4), done
    done = await mfad.mfactl("--json", "import", "pskc", "--pskc-key-file", str(psk), str(pskc_file))
    assert (done.code, done.json()) == (0, {"users_created": 0, "devices_imported": 2, "failed": []}), done

    after = await mfad.mfactl("export")
    expected = [("alice", False, (("totp", "active", "Tokens"),)), ("bob", True, (("totp", "active", "Phone"),)),
                ("carol", False, ()), ("dave", False, ())]
    assert _comparable(json.loads(before.out)) == [
        row if row[0] != "dave" else ("dave", False, (("totp", "pending", "authenticator app"),)) for row in expected]
    assert _comparable(json.loads(after.out)) == expected
    assert await accepted(mfad, "alice", await oathtool(alice, period=60, digits=8, algorithm="sha256"))
    assert not await accepted(mfad, "bob", await oathtool(bob))  # disabled, as before
    await admin.enable_user("bob")
    assert await accepted(mfad, "bob", await oathtool(bob))
    assert await mfad.daemon.stop() == 0
