"""Secrets at rest: the key file, AES-GCM bound to its row, rotation while running."""

from __future__ import annotations

import base64
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mfad.core.errors import SecretsError
from mfad.core.keyring import Keyring, aad_for
from mfad.core.service import Mfa
from mfad.core.verification import Attempt
from signin_calls import verify_code

ATTEMPT = Attempt(protocol="test")
KEY_B64 = base64.b64encode(bytes(32)).decode()


def test_key_file_is_created_0600_in_a_0700_folder(tmp_path: Path) -> None:
    path = tmp_path / "new" / "secrets.key"
    ring = Keyring.open(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    lines = [line for line in path.read_text().splitlines() if line and not line.startswith("#")]
    assert len(lines) == 1 and lines[0].split()[0] == ring.active_kid
    assert len(base64.b64decode(lines[0].split()[1])) == 32
    # Opening it again reads the same key and does not rewrite the file.
    before = path.read_bytes()
    again = Keyring.open(path)
    assert again.active_kid == ring.active_kid and path.read_bytes() == before
    sealed = ring.seal(b"secret", aad_for("devices", "sealed_secret", 1))
    assert again.open_secret(sealed, aad_for("devices", "sealed_secret", 1)) == b"secret"


def test_missing_key_file_is_not_created_when_not_allowed(tmp_path: Path) -> None:
    path = tmp_path / "absent.key"
    with pytest.raises(SecretsError, match=str(path)):
        Keyring.open(path, create=False)
    assert not path.exists()


@pytest.mark.parametrize(("content", "line", "why"), [
    (f"k1 {KEY_B64}\nthis line is wrong\n", 2, "expected"),
    (f"# comment\n\nk1 {KEY_B64}\nk2 not*base64\n", 4, "base64"),
    (f"k1 {base64.b64encode(bytes(16)).decode()}\n", 1, "32 bytes"),
    (f"k1 {KEY_B64}\nk1 {KEY_B64}\n", 2, "duplicate"),
    (f"k:1 {KEY_B64}\n", 1, "':'"),
    (f"k1 {KEY_B64} extra\n", 1, "expected"),
])
def test_corrupt_key_file_names_the_file_and_line(tmp_path: Path, content: str, line: int, why: str) -> None:
    path = tmp_path / "secrets.key"
    path.write_text(content)
    path.chmod(0o600)
    with pytest.raises(SecretsError) as err:
        Keyring.open(path)
    assert f"{path}:{line}:" in str(err.value) and why in str(err.value)


@pytest.mark.parametrize(("content", "why"), [
    (b"# only a comment\n", "no key"),
    (b"", "no key"),
    (b"k1 \xff\xfe\n", "not ASCII"),
])
def test_empty_or_binary_key_file_is_refused(tmp_path: Path, content: bytes, why: str) -> None:
    path = tmp_path / "secrets.key"
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(SecretsError, match=why) as err:
        Keyring.open(path)
    assert str(path) in str(err.value)


def test_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "secrets.key"
    Keyring.open(path)
    path.chmod(0o640)
    with pytest.raises(SecretsError, match="chmod 600"):
        Keyring.open(path)


def test_ciphertext_is_bound_to_table_column_and_row(keyring: Keyring) -> None:
    sealed = keyring.seal(b"0123456789abcdefghij", aad_for("devices", "sealed_secret", 7))
    assert sealed.startswith(keyring.active_kid + ":")
    assert b"0123456789" not in base64.b64decode(sealed.partition(":")[2])
    assert keyring.open_secret(sealed, aad_for("devices", "sealed_secret", 7)) == b"0123456789abcdefghij"
    for aad in (aad_for("devices", "sealed_secret", 8), aad_for("devices", "other", 7),
                aad_for("users", "sealed_secret", 7)):
        with pytest.raises(SecretsError):
            keyring.open_secret(sealed, aad)
    kid, _, body = sealed.partition(":")
    raw = bytearray(base64.b64decode(body))
    raw[-1] ^= 1
    with pytest.raises(SecretsError):
        keyring.open_secret(f"{kid}:{base64.b64encode(bytes(raw)).decode()}", aad_for("devices", "sealed_secret", 7))
    with pytest.raises(SecretsError, match="unknown key"):
        keyring.open_secret(f"knope:{body}", aad_for("devices", "sealed_secret", 7))
    with pytest.raises(SecretsError):
        keyring.open_secret("no key id at all", aad_for("devices", "sealed_secret", 7))


async def test_secret_pasted_into_another_device_row_does_not_open(mfa: Mfa, enrol: Any, db: Any) -> None:
    alice = await enrol("alice")
    bob = await enrol("bob")
    alices = await db.scalar("SELECT sealed_secret FROM devices WHERE id = $1", alice.device.id)
    await db.execute("UPDATE devices SET sealed_secret = $2 WHERE id = $1", bob.device.id, alices)
    before = await db.counts()
    # Bob's row now holds Alice's ciphertext: it must not open there, whatever the code.
    with pytest.raises(SecretsError):
        await verify_code(mfa.signin, "bob", alice.code(1), ATTEMPT)
    assert await db.counts() == before
    assert await db.scalar("SELECT last_step FROM devices WHERE id = $1", bob.device.id) == bob.step()
    assert (await verify_code(mfa.signin, "alice", alice.code(1), ATTEMPT)).accepted


async def test_rotation_and_reencryption_keep_every_device_working(mfa: Mfa, enrol: Any, clock: Any) -> None:
    users = [await enrol(name) for name in ("alice", "bob", "carol")]
    old_kid = mfa.keyring.active_kid
    assert await mfa.store.count_sealed_by_kid() == {old_kid: 3}
    new_kid = mfa.keyring.rotate()
    assert new_kid != old_kid and mfa.keyring.active_kid == new_kid
    # Before re-encryption, old ciphertexts still open (every key in the file opens).
    clock.advance(30)
    assert (await verify_code(mfa.signin, "alice", users[0].code(), ATTEMPT)).accepted

    assert await mfa.reencrypt_secrets(batch=2) == 3
    assert await mfa.store.count_sealed_by_kid() == {new_kid: 3}
    assert await mfa.reencrypt_secrets() == 0
    assert mfa.keyring.retire({new_kid}) == [old_kid]
    clock.advance(30)
    for user in users:
        assert (await verify_code(mfa.signin, user.username, user.code(), ATTEMPT)).accepted, user.username


def test_code_macs_survive_a_rotation(keyring: Keyring) -> None:
    tagged = keyring.mac(b"1:123456")
    keyring.rotate()
    assert keyring.mac(b"1:123456") != tagged  # new key, new tag
    assert keyring.mac_matches(b"1:123456", tagged)
    assert not keyring.mac_matches(b"1:654321", tagged)
    assert not keyring.mac_matches(b"1:123456", "untagged")


def test_another_instance_sees_a_rotation_at_once(tmp_path: Path) -> None:
    """Regression: the reload compared mtimes only, and file times tick coarsely, so a
    rotation made right after another instance loaded the file went unnoticed."""
    path = tmp_path / "secrets.key"
    first = Keyring.open(path)
    second = Keyring.open(path)
    kid = second.rotate()
    assert first.active_kid == kid
    sealed = second.seal(b"x", b"aad")
    assert first.open_secret(sealed, b"aad") == b"x"
    assert second.retire({kid}) != []
    assert first.active_kid == kid and first.kids == [kid]  # the retired key is gone here too


@pytest.mark.slow
def test_a_rotation_by_another_process_is_picked_up(tmp_path: Path, child_env: dict[str, str]) -> None:
    path = tmp_path / "secrets.key"
    ring = Keyring.open(path)
    before = ring.active_kid
    sealed_before = ring.seal(b"old", b"aad")
    script = ("import sys\nfrom mfad.core.keyring import Keyring\n"
              "ring = Keyring.open(sys.argv[1], create=False)\nkid = ring.rotate()\n"
              "print(kid, ring.seal(b'new', b'aad'))\n")
    out = subprocess.run([sys.executable, "-c", script, str(path)], check=True, capture_output=True, text=True,
                         env=child_env, timeout=60)
    kid, sealed_there = out.stdout.split()
    assert kid != before
    assert ring.open_secret(sealed_there, b"aad") == b"new"  # unknown kid → reload → opens
    assert ring.active_kid == kid
    assert ring.seal(b"z", b"aad").startswith(kid + ":")
    assert ring.open_secret(sealed_before, b"aad") == b"old"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


async def test_a_corrupted_key_file_fails_sealing_loudly_and_writes_nothing(mfa: Mfa, db: Any,
                                                                             tmp_path: Path) -> None:
    """A real fault in the middle of a transaction: the device row is inserted, then sealing
    (which reloads the changed key file) fails. Neither the row nor its audit row stays."""
    await mfa.users.create("alice", None)
    before = await db.counts()
    path = tmp_path / "keys" / "secrets.key"
    path.write_text("garbage\n")
    with pytest.raises(SecretsError, match=f"{path}:1"):
        await mfa.devices.begin_totp("alice")
    assert await db.counts() == before
