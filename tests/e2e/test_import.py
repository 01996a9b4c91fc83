"""Importing TOTP secrets and users from other systems, into a running daemon (``mfactl
import``) and into its store offline (``mfad import``), over both engines. The files are
made by the real tools (``google-authenticator`` from libpam-google-authenticator) or
written as those systems write them, and every imported device is proven with a code
from ``oathtool``.
"""

from __future__ import annotations

import base64
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
    assert sorted((e["username"], e["actor"], e["detail"].split()[-1]) for e in tail.json()) == [
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
    assert [(d["method"], d["state"], d["name"]) for d in shown.json()["devices"]] == [("totp", "active", "OldVPN")]

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
